"""Labels that never hurt: pairwise F1 with a reviewer's labels against F1 without them, at
every budget and whatever the batch size, on Abt-Buy and catalogs of the transfer bench.

A simulated reviewer answers from the gold. For each catalog, budget (25-400 labels) and
labelling sequence, the rows that no labelled pair touches are scored (pairwise F1) under:

* ``no labels``: the run's own groups (``eclip dedupe`` with defaults);
* ``eclip, one batch``: ``eclip label --batch N`` once, every pair answered, then ``eclip
  learn`` (which keeps, blends or sets aside the model after its held-out check) and
  ``eclip dedupe --match-model`` (the labels as constraints);
* ``eclip, batches of 20``: the same budget in ``N / 20`` rounds of ``eclip label --batch
  20``, each round proposed by a model refitted to the answers so far;
* ``random labels``: the same learn and dedupe path on candidate pairs drawn uniformly;
* ``dedupe library``: dedupe.io's own active learner (``uncertain_pairs``, ``mark_pairs``,
  ``train``, ``partition``) with String/Text comparisons of the title (and brand and price
  where the catalog has them), answered by the same reviewer, partitioned at its default
  threshold 0.5. It runs in ``--dedupe-python``, an interpreter of its own, because its pins
  do not fit eclip's lock file::

      python -m venv /tmp/dedupe-env && /tmp/dedupe-env/bin/pip install dedupe "BTrees<6"

  (dedupe 3.0.3 calls ``IFBucket.byValue``, which BTrees 6 removed.) Without one it is
  skipped, and the table says so.

``kept`` counts what ``eclip learn`` kept over the sequences (learned / blended /
label-free). Catalogs: Abt-Buy, WDC Products (gold ``product_id``, a lower bound) and
ProMap CZ (``bench/data/promapcz``, Czech), the three catalogs of ``bench/transfer.py`` with a
gold for every row (the pair sets know only their labelled pairs, so a simulated reviewer
could not answer most proposals there).

    uv run python bench/active.py [--data ../shared/data] [--only abt_buy] [--seeds 3]
        [--budgets 25,50,100,200,400] [--dedupe-python /path/to/python] [--plot bench/active.png]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from eclip import api
from eclip.evaluation import load_gold
from eclip.evaluation.metrics import pairwise_prf
from eclip.jobs.learn import RunPairs, fit_on_labels, open_run
from eclip.matcher import group
from eclip.matcher.comparisons import parse_price
from eclip.matcher.labels import Labels, choose_pairs
from eclip.matcher.mixture import MatchSettings
from eclip.matcher.model import MatchModelError, fit_match_model, settings_from_model

sys.path.insert(0, str(Path(__file__).parent))
from transfer import cpu_flags  # noqa: E402 - the transfer bench's CPU flags line

HERE = Path(__file__).parent
#: name -> (catalog, gold file, gold column, text columns, dedupe-library fields); a
#: relative path starting with "bench/" is under this folder, others under --data.
CATALOGS = {
    "abt_buy": (
        "abt_buy/catalog.csv",
        "abt_buy/matches.csv",
        None,
        None,
        [["String", "name"], ["Text", "name"], ["String", "manufacturer"], ["Price", "price"]],
    ),
    "wdc_products": (
        "wdc_products/offers.csv",
        "wdc_products/offers.csv",
        "product_id",
        None,
        [["String", "title"], ["Text", "title"], ["String", "brand"], ["Price", "price"]],
    ),
    "promapcz": (
        "bench/data/promapcz/catalog.csv",
        "bench/data/promapcz/catalog.csv",
        "product_id",
        ["title"],
        [["String", "title"], ["Text", "title"]],
    ),
}
BATCH = 20
#: Partition thresholds tried for the dedupe library (0.5 is its default).
DEDUPE_THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
console = Console(width=130)


def f1_unlabelled(labels: np.ndarray, gold: np.ndarray, labelled_rows: set[int]) -> float:
    keep = np.ones(len(gold), bool)
    keep[list(labelled_rows)] = False
    return pairwise_prf(labels[keep], gold[keep])[2]


def label_free_settings(run: RunPairs) -> MatchSettings:
    """The run's own label-free settings, as ``eclip dedupe`` rebuilds them beside a model."""
    on, threshold = run.label_free()
    m = run.manifest["matching"]
    return MatchSettings(
        m["method_used"],
        threshold,
        m["threshold_on"],
        on if m["threshold_on"] == "match_probability" else run.prior,
        {},
    )


def taught_groups(run: RunPairs, chosen: list[int], answers: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """``eclip learn`` on the answered pairs, then ``eclip dedupe --match-model``'s grouping:
    ``((n,) group labels, what learn kept)``."""
    n, a, b = len(run.ids), run.a, run.b
    decision = np.where(answers, "same", "different")
    labels = Labels(a[chosen], b[chosen], decision, pl.DataFrame())
    constraints = labels.constraints()
    free = label_free_settings(run)
    try:
        model, _ = fit_on_labels(run, labels, seed)
    except MatchModelError:  # one class only: learn refuses, and dedupe runs without a model
        return group(n, a, b, run.label_free()[0], free.threshold, free.method, constraints).labels, "no model"
    s = settings_from_model(model, "bench", n, a, b, run.columns, free.method, None, constraints, lambda: free)
    on = s.probability if s.on == "match_probability" else run.label_free()[0]
    return group(n, a, b, on, s.threshold, s.method, constraints).labels, model.use


def eclip_curve(
    run: RunPairs, gold: np.ndarray, base: np.ndarray, budgets: list[int], strategy: str, batch: int | None, seed: int
) -> dict[int, tuple[float, float, str]]:
    """One labelling sequence scored at each budget: ``{budget: (F1 with labels, F1 of the run
    without labels on the same rows, what learn kept)}``. ``batch=None``: one batch per budget
    (a fresh sequence each time)."""
    a, b = run.a, run.b
    truth = gold[a] == gold[b]
    out: dict[int, tuple[float, float, str]] = {}
    chosen: list[int] = []
    prob = run.prior
    for budget in budgets:
        if batch is None:
            chosen, prob = [], run.prior
        step_size = batch or budget
        while len(chosen) < budget:
            step = min(step_size, budget - len(chosen))
            exclude = np.zeros(len(a), bool)
            exclude[chosen] = True
            if strategy == "random":
                rng = np.random.default_rng(seed * 7919 + len(chosen))
                idx = rng.choice(np.flatnonzero(~exclude), min(step, int((~exclude).sum())), replace=False)
            else:  # eclip label: what propose() does, on the model fitted to the answers so far
                idx, _ = choose_pairs(prob, exclude, step, seed=seed * 1000 + len(chosen), keys=run.keys)
            chosen += idx.tolist()
            y = truth[chosen].astype(np.int64)
            if strategy != "random" and len(np.unique(y)) == 2:
                prob = fit_match_model(run.x[chosen], y, run.names, run.x, run.prior, seed=seed).probability(run.x)
        labels, kept = taught_groups(run, chosen, truth[chosen], seed)
        rows = set(a[chosen].tolist()) | set(b[chosen].tolist())
        out[budget] = (f1_unlabelled(labels, gold, rows), f1_unlabelled(base, gold, rows), kept)
    return out


def dedupe_library_curve(
    python: str, catalog: Path, fields, ids, gold, budgets, seed: int, cache: Path | None
) -> tuple[dict[int, float], dict[int, float], float]:
    """dedupe's F1 at its default partition threshold 0.5, and at the best of
    :data:`DEDUPE_THRESHOLDS` on the gold (an oracle, for reference), per budget; results
    are kept in ``cache`` (a folder) and reused, as the library takes minutes per budget."""
    table = pl.read_csv(catalog, infer_schema=False)
    names = sorted({f for _, f in fields})
    rows = {}
    for rec in table.iter_rows(named=True):
        r = {f: rec.get(f) for f in names}
        if "price" in r:
            p = parse_price(r["price"])
            r["price"] = None if p is None or not np.isfinite(p) or p <= 0 else float(p)
        r["__id"] = str(rec["id"])
        rows[str(rec["id"])] = r
    out, oracle, seconds = {}, {}, 0.0
    pos = {x: i for i, x in enumerate(ids)}
    cache_file = cache / f"dedupe_{catalog.parent.name}_seed{seed}.json" if cache else None
    cached = json.loads(cache_file.read_text()) if cache_file and cache_file.exists() else {}
    for budget in budgets:
        if str(budget) in cached:
            out[budget], oracle[budget] = cached[str(budget)]
            continue
        job = {
            "rows": rows,
            "fields": fields,
            "gold": {i: int(gold[pos[i]]) for i in ids},
            "budget": budget,
            "seed": seed,
            "thresholds": DEDUPE_THRESHOLDS,
        }
        res = subprocess.run(
            [
                python,
                "-I",
                str(Path(__file__).with_name("_dedupe_library.py")),
            ],  # -I: bench/dedupe.py must not shadow the library
            input=json.dumps(job),
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            console.print(
                f"[red]dedupe library failed at {budget} labels: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}[/]"
            )
            out[budget] = float("nan")
            continue
        r = json.loads(res.stdout)
        f1 = {}
        for t, groups in r["groups"].items():
            labels = np.arange(len(ids)) + len(ids)  # unclustered rows are singletons
            for i, g in groups.items():
                labels[pos[i]] = g
            f1[float(t)] = f1_unlabelled(labels, gold, {pos[i] for i in r["labelled_ids"]})
        out[budget] = f1[0.5]
        oracle[budget] = max(f1.values())
        seconds += r["seconds"]
        if cache_file:
            cached[str(budget)] = [out[budget], oracle[budget]]
            cache_file.write_text(json.dumps(cached))
    return out, oracle, seconds


def catalog_path(data: Path, rel: str) -> Path:
    return HERE / rel.removeprefix("bench/") if rel.startswith("bench/") else data / rel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--only", choices=list(CATALOGS))
    ap.add_argument("--budgets", default="25,50,100,200,400")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--work", type=Path, default=Path("/tmp/eclip-bench-active"), help="Run directories (reused when present)."
    )
    ap.add_argument("--dedupe-python", default=None, help="Interpreter with the dedupe library installed.")
    ap.add_argument("--dedupe-seeds", type=int, default=1)
    ap.add_argument(
        "--dedupe-budgets",
        default=None,
        help="Budgets for the dedupe library on catalogs over 5,000 rows (default: --budgets); it takes "
        "minutes per budget on 10k rows.",
    )
    ap.add_argument("--plot", type=Path, default=None, help="Write the learning curves as a PNG.")
    args = ap.parse_args()
    all_budgets = [int(x) for x in args.budgets.split(",")]
    console.print(f"CPU: {platform.processor() or platform.machine()}, flags {cpu_flags()}")
    results: dict[str, dict[str, dict[int, list[float]]]] = {}
    for name, (cat_rel, gold_rel, gold_col, text_cols, fields) in CATALOGS.items():
        if args.only and name != args.only:
            continue
        catalog = catalog_path(args.data, cat_rel)
        run_dir = args.work / name
        t0 = time.perf_counter()
        if not (run_dir / "manifest.json").exists():
            api.dedupe(catalog, run_dir, api.DedupeConfig(text_cols=text_cols))
        run = open_run(run_dir)
        gold = load_gold(catalog_path(args.data, gold_rel), run.ids, cluster_col=gold_col)
        base = pl.read_parquet(run_dir / "groups.parquet")["group_id"].to_numpy()
        y = gold[run.a] == gold[run.b]
        budgets = [k for k in all_budgets if k <= len(run.ids) // 2]  # more labels would touch most rows
        console.print(
            f"[bold]{name}[/]: {len(run.ids):,} rows, {len(run.a):,} candidate pairs ({y.mean():.1%} same "
            f"product); eclip without labels: F1 {pairwise_prf(base, gold)[2]:.3f} (all rows)"
        )
        columns = {
            "no labels": {},
            "eclip, one batch": {},
            "eclip, batches of 20": {},
            "random labels": {},
            "dedupe library": {},
        }
        res: dict[str, dict[int, list[float]]] = {c: {} for c in columns}
        gain: dict[str, dict[int, list[float]]] = {c: {} for c in columns}
        kept: dict[str, dict[int, Counter]] = {c: {} for c in columns}
        worst_gap = {c: np.inf for c in ("eclip, one batch", "eclip, batches of 20", "random labels")}
        # "no labels" is scored on the rows each eclip / random sequence left unlabelled, pooled
        for col, strategy, batch in (
            ("eclip, one batch", "active", None),
            ("eclip, batches of 20", "active", BATCH),
            ("random labels", "random", BATCH),
        ):
            t1 = time.perf_counter()
            for seed in range(args.seeds):
                for k, (f1, f1_base, use) in eclip_curve(run, gold, base, budgets, strategy, batch, seed).items():
                    res[col].setdefault(k, []).append(f1)
                    gain[col].setdefault(k, []).append(f1 - f1_base)
                    res["no labels"].setdefault(k, []).append(f1_base)
                    kept[col].setdefault(k, Counter())[use] += 1
                    worst_gap[col] = min(worst_gap[col], f1 - f1_base)
            console.print(f"  {col}: {time.perf_counter() - t1:.0f} s for {args.seeds} sequence(s)")
        if args.dedupe_python:
            for seed in range(args.dedupe_seeds):
                large = args.dedupe_budgets and len(run.ids) > 5000
                dd_budgets = [int(x) for x in args.dedupe_budgets.split(",")] if large else budgets
                curve, _, secs = dedupe_library_curve(
                    args.dedupe_python, catalog, fields, run.ids, gold, dd_budgets, seed, args.work
                )
                for k, v in curve.items():
                    res["dedupe library"].setdefault(k, []).append(v)
                console.print(f"  dedupe library: {secs:.0f} s (seed {seed})")
        else:
            console.print("  dedupe library: skipped (pass --dedupe-python)")
        results[name] = {c: gain[c] for c in ("eclip, one batch", "eclip, batches of 20", "random labels")}
        table = Table(
            title=f"{name}: pairwise F1 on the rows no label touches, mean over sequences (in brackets: the "
            "mean change against no labels on the same rows)"
        )
        table.add_column("labels", justify="right")
        for m in res:
            table.add_column(m, justify="right")
        table.add_column("change: one batch - batches", justify="right")
        table.add_column("kept (one batch | batches of 20)")
        for k in budgets:
            cells, means = [], {}
            for m, curve in res.items():
                v = np.array(curve.get(k, []), dtype=float)
                means[m] = float(np.nanmean(v)) if len(v) and not np.isnan(v).all() else float("nan")
                g = gain[m].get(k)
                cells.append(
                    "-"
                    if np.isnan(means[m])
                    else f"{means[m]:.3f}"
                    + (f" ({np.mean(g):+.3f})" if g else f" ({np.nanmin(v):.3f}-{np.nanmax(v):.3f})")
                )
            one, many = np.mean(gain["eclip, one batch"][k]), np.mean(gain["eclip, batches of 20"][k])
            show = lambda c: ", ".join(f"{u} {n}" for u, n in sorted(c.items()))  # noqa: E731
            table.add_row(
                str(k),
                *cells,
                f"{one - many:+.3f}",
                f"{show(kept['eclip, one batch'][k])} | {show(kept['eclip, batches of 20'][k])}",
            )
        console.print(table)
        console.print(
            "  worst (with labels - without) over every budget and sequence: "
            + ", ".join(f"{c} {g:+.3f}" for c, g in worst_gap.items())
        )
        console.print(f"  {name}: {time.perf_counter() - t0:.0f} s in all")
    if args.plot:
        _plot(results, all_budgets, args.plot)


def _plot(gains: dict[str, dict[str, dict[int, list[float]]]], budgets: list[int], path: Path) -> None:
    """Per catalog, the mean change of F1 against no labels on the same rows, by budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(gains), figsize=(5.5 * len(gains), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], gains.items()):
        for m, curve in res.items():
            ks = [k for k in budgets if k in curve]
            if ks:
                ax.plot(ks, [np.mean(curve[k]) for k in ks], marker="o", label=m)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.minorticks_off()
        ks = [k for k in budgets if any(k in c for c in res.values())]
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("labelled pairs")
        ax.set_ylabel("F1 change against no labels (same rows)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
