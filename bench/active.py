"""Learning curves of active learning: pairwise F1 against the number of reviewed pairs, on
both dev catalogs, in one run.

A simulated reviewer answers from the gold labels. Three ways of choosing the pairs are
compared at each budget (25, 50, 100, 200, 400 labels by default):

* ``eclip active``: ``eclip label``'s choice (uncertainty sampling on a model refitted after
  every batch of 20, a quarter of each batch at random), then ``eclip learn`` and ``dedupe
  --match-model``'s grouping (probabilities from the match model, threshold by expected F1,
  labelled pairs as constraints);
* ``eclip random``: the same model and grouping, trained on candidate pairs drawn at random;
* ``dedupe library``: dedupe.io's own active learner (``uncertain_pairs``, ``mark_pairs``,
  ``train``, ``partition``) with String/Text comparisons of the title, the brand and the
  price, answered by the same reviewer, partitioned at its default threshold 0.5 (and, for
  reference, at the best of 0.1-0.9 on the gold: an oracle). It runs in ``--dedupe-python``,
  an interpreter of its own, because its pins do not fit eclip's lock file::

      python -m venv /tmp/dedupe-env && /tmp/dedupe-env/bin/pip install dedupe "BTrees<6"

  (dedupe 3.0.3 calls ``IFBucket.byValue``, which BTrees 6 removed.) Without one it is
  skipped, and the table says so.

F1 is measured on the rows that no labelled pair touches (each method's own labels), and
each label sequence is scored at every budget it passes. The unlabelled eclip default is
printed beside them (all rows).

    uv run python bench/active.py [--data ../shared/data] [--only abt_buy] [--seeds 3]
        [--dedupe-python /path/to/python] [--plot bench/active.png]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from eclip import api
from eclip.evaluation import load_gold
from eclip.evaluation.metrics import pairwise_prf
from eclip.jobs.learn import open_run
from eclip.matcher import group
from eclip.matcher.comparisons import parse_price
from eclip.matcher.labels import Labels, choose_pairs
from eclip.matcher.model import fit_match_model, model_constraints, settings_from_model

#: name -> (catalog, gold file, gold column, dedupe-library fields)
CATALOGS = {
    "abt_buy": (
        "abt_buy/catalog.csv",
        "abt_buy/matches.csv",
        None,
        [["String", "name"], ["Text", "name"], ["String", "manufacturer"], ["Price", "price"]],
    ),
    "wdc_products": (
        "wdc_products/offers.csv",
        "wdc_products/offers.csv",
        "product_id",
        [["String", "title"], ["Text", "title"], ["String", "brand"], ["Price", "price"]],
    ),
}
BATCH = 20
#: Partition thresholds tried for the dedupe library (0.5 is its default).
DEDUPE_THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
console = Console(width=110)


def code_version() -> str:
    """Digest of the code behind eclip's curves (labels, model, grouping, this file): cached
    curves are reused only while it is unchanged."""
    import hashlib

    import eclip.matcher.grouping as grouping
    import eclip.matcher.labels as labels
    import eclip.matcher.model as model

    h = hashlib.sha256()
    for f in (labels.__file__, model.__file__, grouping.__file__, __file__):
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:12]


def f1_unlabelled(labels: np.ndarray, gold: np.ndarray, labelled_rows: set[int]) -> float:
    keep = np.ones(len(gold), bool)
    keep[list(labelled_rows)] = False
    return pairwise_prf(labels[keep], gold[keep])[2]


def eclip_curve(
    run, columns, gold, budgets, strategy: str, seed: int, default: np.ndarray, unlabelled_default: dict
) -> dict[int, float]:
    """One labelling sequence (batches of 20, cut to land on each budget), scored at each
    budget; the run's own groups (no labels) are scored on the same rows into
    ``unlabelled_default``."""
    n, a, b = len(run.ids), run.a, run.b
    y_all = gold[a] == gold[b]
    chosen: list[int] = []
    why: list[str] = []
    prob = run.prior
    out: dict[int, float] = {}
    for budget in budgets:
        while len(chosen) < budget:
            step = min(BATCH, budget - len(chosen))
            exclude = np.zeros(len(a), bool)
            exclude[chosen] = True
            idx, reasons = choose_pairs(
                prob, exclude, step, seed=seed * 1000 + len(chosen), random_share=1.0 if strategy == "random" else 0.25
            )
            chosen += idx.tolist()
            why += reasons
            y = y_all[chosen].astype(np.int64)
            if len(np.unique(y)) == 2:
                model = fit_match_model(
                    run.x[chosen], y, run.names, run.x, run.prior, seed=seed, random_labels=np.array(why) == "random"
                )
                prob = model.probability(run.x)
        decision = np.where(y_all[chosen], "same", "different")
        labels = Labels(a[chosen], b[chosen], decision, pl.DataFrame())
        y = y_all[chosen].astype(np.int64)
        rows = set(a[chosen].tolist()) | set(b[chosen].tolist())
        if len(np.unique(y)) < 2:  # nothing to fit yet: the run's own grouping, with the labels as constraints
            g = group(n, a, b, run.prior, 0.5, "auto", labels.constraints())
            out[budget] = f1_unlabelled(g.labels, gold, rows)
            continue
        model = fit_match_model(
            run.x[chosen], y, run.names, run.x, run.prior, seed=seed, random_labels=np.array(why) == "random"
        )
        model.labels = [
            {"id_a": run.ids[i], "id_b": run.ids[j], "decision": d}
            for i, j, d in zip(labels.a.tolist(), labels.b.tolist(), decision.tolist())
        ]
        constraints, _ = model_constraints(model, run.ids)
        settings = settings_from_model(
            model, "bench", n, a, b, columns, run.manifest["matching"]["method_used"], None, constraints
        )
        g = group(n, a, b, settings.probability, settings.threshold, settings.method, constraints)
        out[budget] = f1_unlabelled(g.labels, gold, rows)
        unlabelled_default.setdefault(budget, []).append(f1_unlabelled(default, gold, rows))
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
        help="Budgets for the dedupe library (default: --budgets); it takes minutes per budget on 10k rows.",
    )
    ap.add_argument("--plot", type=Path, default=None, help="Write the learning curves as a PNG.")
    args = ap.parse_args()
    budgets = [int(x) for x in args.budgets.split(",")]
    results: dict[str, dict[str, dict[int, list[float]]]] = {}
    for name, (cat_rel, gold_rel, gold_col, fields) in CATALOGS.items():
        if args.only and name != args.only:
            continue
        catalog = args.data / cat_rel
        run_dir = args.work / name
        t0 = time.perf_counter()
        if not (run_dir / "manifest.json").exists():
            api.dedupe(catalog, run_dir)
        run = open_run(run_dir)
        gold = load_gold(args.data / gold_rel, run.ids, cluster_col=gold_col)
        base = pl.read_parquet(run_dir / "groups.parquet")["group_id"].to_numpy()
        columns = run.columns
        y = gold[run.a] == gold[run.b]
        console.print(
            f"[bold]{name}[/]: {len(run.ids):,} rows, {len(run.a):,} candidate pairs ({y.mean():.1%} same "
            f"product); eclip default without labels: F1 {pairwise_prf(base, gold)[2]:.3f} (all rows)"
        )
        res: dict[str, dict[int, list[float]]] = {
            "eclip, no labels (same rows as active)": {},
            "eclip active": {},
            "eclip random": {},
            "dedupe library": {},
            "dedupe, best threshold (oracle)": {},
            "_": {},
        }
        for strategy in ("active", "random"):
            t1 = time.perf_counter()
            for seed in range(args.seeds):
                cache = args.work / f"eclip_{name}_{strategy}_seed{seed}_{code_version()}.json"
                if cache.exists():  # the same code, catalog, budgets and seed: the same numbers
                    saved = json.loads(cache.read_text())
                    curve, same_rows = (
                        {int(k): v for k, v in saved["curve"].items()},
                        {int(k): v for k, v in saved["same_rows"].items()},
                    )
                else:
                    same_rows: dict = {}
                    curve = eclip_curve(run, columns, gold, budgets, strategy, seed, base, same_rows)
                    same_rows = {k: v[0] for k, v in same_rows.items()}
                    cache.write_text(json.dumps({"curve": curve, "same_rows": same_rows}))
                for k in budgets:
                    res[f"eclip {strategy}"].setdefault(k, []).append(curve[k])
                    if strategy == "active":
                        res["eclip, no labels (same rows as active)"].setdefault(k, []).append(same_rows[k])
            console.print(f"  eclip {strategy}: {time.perf_counter() - t1:.0f} s for {args.seeds} sequence(s)")
        if args.dedupe_python:
            for seed in range(args.dedupe_seeds):
                dd_budgets = [int(x) for x in args.dedupe_budgets.split(",")] if args.dedupe_budgets else budgets
                curve, oracle, secs = dedupe_library_curve(
                    args.dedupe_python, catalog, fields, run.ids, gold, dd_budgets, seed, args.work
                )
                for k, v in curve.items():
                    res["dedupe library"].setdefault(k, []).append(v)
                    res["dedupe, best threshold (oracle)"].setdefault(k, []).append(oracle[k])
                console.print(f"  dedupe library: {secs:.0f} s (seed {seed})")
        else:
            console.print("  dedupe library: skipped (pass --dedupe-python)")
        res.pop("_")
        results[name] = res
        table = Table(title=f"{name}: pairwise F1 on the unlabelled rows (mean over sequences; min-max)")
        table.add_column("labels", justify="right")
        for m in res:
            table.add_column(m, justify="right")
        table.add_column("active / random", justify="right")
        table.add_column("active / dedupe", justify="right")
        for k in budgets:
            cells = []
            means = {}
            for m, curve in res.items():
                v = np.array(curve.get(k, []), dtype=float)
                means[m] = float(np.nanmean(v)) if len(v) and not np.isnan(v).all() else float("nan")
                cells.append(
                    "-"
                    if np.isnan(means[m])
                    else f"{means[m]:.3f}" + (f" ({np.nanmin(v):.3f}-{np.nanmax(v):.3f})" if len(v) > 1 else "")
                )
            ratio = lambda x, y: "-" if np.isnan(x) or np.isnan(y) or y == 0 else f"{x / y:.2f}x"  # noqa: E731
            table.add_row(
                str(k),
                *cells,
                ratio(means["eclip active"], means["eclip random"]),
                ratio(means["eclip active"], means["dedupe library"]),
            )
        console.print(table)
        console.print(f"  {name}: {time.perf_counter() - t0:.0f} s in all")
    if args.plot:
        _plot(results, budgets, args.plot)


def _plot(results, budgets, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        for m, curve in res.items():
            if not curve:
                continue
            ks = [k for k in budgets if k in curve]  # the dedupe library may run on fewer budgets
            ax.plot(ks, [np.nanmean(curve[k]) for k in ks], marker="o", label=m)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(budgets, [str(k) for k in budgets])
        ax.set_xlabel("labelled pairs")
        ax.set_ylabel("pairwise F1 (unlabelled rows)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
