"""Benchmark `eclip filter-adult` at different adult base rates, without labels and few-shot.

Catalogs, built from ``../shared/data`` (gold: netmeds' category ``Sexual Wellness``):

* ``netmeds``: all 2,154 rows, title + manufacturer (its ``category`` column is the gold, so
  it is left out) -- 9.3 % adult;
* ``netmeds + category``: the same with the default columns, which include ``category``;
* ``rare s``: netmeds' adult rows sampled to 0.2 % (seed ``s``) among netmeds' other rows
  plus the fashion and grocery titles (about 24 adult rows in 11,900);
* ``1 %``: the same at 1 %; ``no adult``: the negatives alone.

Each catalog runs ``filter-adult`` with its defaults (threshold chosen from the estimated base
rate for expected precision 0.9). The baseline, measured on the same vectors in the same run,
is the filter before the base-rate estimate: softmax at logit scale 10 over the adult
concepts and 42 top-level and health/personal-care categories, flagged at 0.5. The oracle
column is the best recall at precision 0.9 (0.8 for the rare catalogs) any threshold on the
margin reaches, using the gold.

The learning curve fits ``--fit-probe`` on k labelled adult rows plus 10 k labelled others,
drawn from a random half of netmeds, and measures the other half (rows not used for fitting):
precision and recall at the probe's calibrated threshold, the share of draws whose precision
reaches 0.9, and the best recall at precision 0.9 (mean of ``--draws`` draws, 10). Its
baseline, on the same draws, is the linear probe on vectors + margin that ``--fit-probe``
fitted before the stacked probe of :mod:`eclip.classify.fewshot`.

Last, the k = 20 probes are reused with ``--probe`` on the rare, 1 % and no-adult catalogs
(rows they were fitted on left out): the threshold chosen again at each catalog's base rate,
beside the threshold each probe was fitted with (the baseline).

    uv run python bench/adult.py [--data ../shared/data] [--work /tmp/eclip-bench-adult]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table
from scipy.special import logsumexp

from eclip import api
from eclip.classify import ADULT_CONCEPTS, DEFAULT_TEMPLATES, fit_probe, label_vectors
from eclip.encoders import load_embeddings, load_text_encoder

console = Console(width=120)
POSITIVE = "Sexual Wellness"
#: The filter's ordinary categories before the base-rate estimate (the baseline).
OLD_GENERAL = (
    "Animals & Pet Supplies",
    "Apparel & Accessories",
    "Arts & Entertainment",
    "Baby & Toddler",
    "Business & Industrial",
    "Cameras & Optics",
    "Electronics",
    "Food, Beverages & Tobacco",
    "Furniture",
    "Hardware",
    "Health & Beauty",
    "Home & Garden",
    "Luggage & Bags",
    "Media",
    "Office Supplies",
    "Religious & Ceremonial",
    "Software",
    "Sporting Goods",
    "Toys & Games",
    "Vehicles & Parts",
    "Biometric Monitors",
    "First Aid",
    "Fitness & Nutrition",
    "Vitamins & Supplements",
    "Hearing Aids",
    "Incontinence Aids",
    "Medical Tests",
    "Medicine & Drugs",
    "Mobility & Accessibility",
    "Respiratory Care",
    "Supports & Braces",
    "Cosmetics",
    "Deodorant & Anti-Perspirant",
    "Ear Care",
    "Feminine Sanitary Supplies",
    "Foot Care",
    "Hair Care",
    "Massage & Relaxation",
    "Oral Care",
    "Shaving & Grooming",
    "Skin Care",
    "Vision Care",
)


def recall_at_precision(score: np.ndarray, y: np.ndarray, target: float) -> float:
    """Best recall of any threshold whose precision reaches ``target`` (0 when none does)."""
    order = np.argsort(-score, kind="stable")
    tp = np.cumsum(y[order])
    ok = tp / np.arange(1, len(y) + 1) >= target
    return float(tp[ok].max() / max(1, y.sum())) if ok.any() else 0.0


def pr(flag: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    tp = int((flag & y).sum())
    return tp / max(1, int(flag.sum())), tp / max(1, int(y.sum())), int(flag.sum())


def build_catalogs(data: Path, work: Path) -> dict[str, tuple[Path, list[str] | None]]:
    """Write the catalogs (``id, title, brand, adult``) and return name -> (file, text_cols)."""
    nm = pl.read_csv(data / "netmeds" / "products.csv", infer_schema=False).with_row_index("n", 1)
    nm_rows = nm.select(
        pl.format("nm{}", "n").alias("id"),
        pl.col("title").fill_null(""),
        pl.col("manufacturer").fill_null("").alias("brand"),
        (pl.col("category") == POSITIVE).alias("adult"),
    )
    others = pl.concat(
        [
            pl.read_csv(data / "fashion" / "catalog.csv", infer_schema=False)
            .with_row_index("n", 1)
            .select(
                pl.format("fa{}", "n").alias("id"),
                pl.col("title").fill_null(""),
                pl.lit("").alias("brand"),
                pl.lit(False).alias("adult"),
            ),
            pl.read_csv(data / "grocery" / "catalog.csv", infer_schema=False)
            .with_row_index("n", 1)
            .select(
                pl.format("gr{}", "n").alias("id"),
                pl.col("title").fill_null(""),
                pl.lit("").alias("brand"),
                pl.lit(False).alias("adult"),
            ),
        ]
    )
    negatives = pl.concat([nm_rows.filter(~pl.col("adult")), others])
    positives = nm_rows.filter(pl.col("adult"))
    out: dict[str, tuple[Path, list[str] | None]] = {}
    nm_file = work / "netmeds.csv"
    nm.drop("n").with_row_index("id", 1).write_csv(nm_file)
    out["netmeds (title, manufacturer)"] = (nm_file, ["title", "manufacturer"])
    out["netmeds (default columns)"] = (nm_file, None)

    def mixed(name: str, rate: float, seed: int) -> None:
        k = int(round(rate * negatives.height / (1 - rate)))
        rows = (
            pl.concat([positives.sample(k, seed=seed), negatives]).sample(fraction=1.0, shuffle=True, seed=seed)
            if k
            else negatives
        )
        path = work / f"{name.replace(' ', '_').replace('%', 'pct')}.csv"
        rows.write_csv(path)
        out[name] = (path, ["title", "brand"])

    for seed in range(5):
        mixed(f"rare 0.2% seed {seed}", 0.002, seed)
    mixed("1%", 0.01, 7)
    mixed("no adult", 0.0, 0)
    return out


def gold_of(path: Path, ids: list[str]) -> np.ndarray:
    table = pl.read_csv(path, infer_schema=False)
    if "adult" in table.columns:
        by_id = dict(zip(table["id"].to_list(), (table["adult"] == "true").to_list()))
    else:
        by_id = dict(zip(table["id"].to_list(), (table["category"] == POSITIVE).to_list()))
    return np.array([by_id[i] for i in ids], dtype=bool)


def old_default(run: Path, concepts: np.ndarray) -> np.ndarray:
    """The baseline's flags on the run's text vectors, given its ``(c, d)`` concept vectors
    (the adult concepts, then :data:`OLD_GENERAL`)."""
    x = load_embeddings(run / "embeddings").text
    z = 10.0 * (x @ concepts.T).astype(np.float64)
    log_odds = logsumexp(z[:, : len(ADULT_CONCEPTS)], axis=1) - logsumexp(z[:, len(ADULT_CONCEPTS) :], axis=1)
    return log_odds >= 0.0  # probability 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/eclip-bench-adult"))
    ap.add_argument("--skip-curve", action="store_true")
    ap.add_argument("--draws", type=int, default=10, help="random draws per point of the learning curve")
    ap.add_argument("--reuse-only", action="store_true", help="only the reuse table (the k = 20 probes must exist)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.reuse_only:
        reuse_probe(args)
        return
    encode = load_text_encoder("minilm").encode
    old_concepts = label_vectors(
        encode, list(ADULT_CONCEPTS) + list(OLD_GENERAL), DEFAULT_TEMPLATES
    )  # once, for every catalog
    table = Table(
        title="filter-adult without labels (default threshold: expected precision 0.9 at the estimated base rate)"
    )
    for col in (
        "catalog",
        "rows",
        "adult",
        "est. base rate",
        "true",
        "flags",
        "P",
        "R",
        "baseline P",
        "baseline R",
        "baseline flags",
        "oracle R",
        "s",
    ):
        table.add_column(col, justify="left" if col == "catalog" else "right")
    for name, (path, cols) in build_catalogs(args.data, args.work).items():
        run = args.work / ("run_" + path.stem + ("_default" if cols is None else ""))
        t0 = time.perf_counter()
        m = api.filter_adult(path, run, api.AdultFilterConfig(id_col="id", text_cols=cols))
        secs = time.perf_counter() - t0
        flags = pl.read_parquet(run / "flagged.parquet")
        y = gold_of(path, flags["id"].to_list())
        p, r, n_flag = pr(flags["flagged"].to_numpy(), y)
        bp, br, bn = pr(old_default(run, old_concepts), y)
        target = 0.8 if y.mean() < 0.005 else 0.9
        oracle = recall_at_precision(flags["adult_score"].to_numpy(), y, target) if y.any() else float("nan")
        est = m["base_rate"]["estimated"]
        table.add_row(
            name,
            f"{len(y):,}",
            f"{int(y.sum()):,}",
            f"{est:.4f}" if est is not None else "-",
            f"{y.mean():.4f}",
            f"{n_flag:,}",
            f"{p:.3f}",
            f"{r:.3f}",
            f"{bp:.3f}",
            f"{br:.3f}",
            f"{bn:,}",
            f"{oracle:.3f} @P{target}",
            f"{secs:.0f}",
        )
        console.print(f"done {name}: P {p:.3f} R {r:.3f} flags {n_flag} (baseline P {bp:.3f} R {br:.3f} flags {bn})")
    console.print(table)
    if args.skip_curve:
        return
    curve = Table(
        title="--fit-probe learning curve on netmeds (title, manufacturer): fit on k adult + 10k other labelled rows of one half, "
        f"measured on the other half (mean of {args.draws} draws)"
    )
    for col in (
        "k adult rows",
        "labelled rows",
        "P at its threshold",
        "R at its threshold",
        "draws P >= 0.9",
        "best R at P 0.9",
        "baseline: linear probe, best R at P 0.9",
        "ratio",
        "zero-shot best R at P 0.9",
        "est. base rate (true 0.093)",
    ):
        curve.add_column(col, justify="right")
    nm_file = args.work / "netmeds.csv"
    emb = args.work / "run_netmeds" / "embeddings"
    table_nm = pl.read_csv(nm_file, infer_schema=False)
    y_all = (table_nm["category"] == POSITIVE).to_numpy()
    ids = table_nm["id"].to_numpy()
    vectors = load_embeddings(emb).text
    for k in (10, 20, 40, 80):
        stats = []
        for seed in range(args.draws):
            rng = np.random.default_rng(seed)
            half = rng.permutation(len(ids))[: len(ids) // 2]
            in_a = np.zeros(len(ids), dtype=bool)
            in_a[half] = True
            pos = rng.choice(np.flatnonzero(in_a & y_all), k, replace=False)
            neg = rng.choice(np.flatnonzero(in_a & ~y_all), 10 * k, replace=False)
            labels = args.work / f"labels_k{k}_s{seed}.csv"
            pl.DataFrame(
                {"id": ids[np.r_[pos, neg]], "adult": np.r_[np.ones(k, bool), np.zeros(10 * k, bool)]}
            ).write_csv(labels)
            run = args.work / f"probe_k{k}_s{seed}"
            m = api.filter_adult(
                emb,
                run,
                api.AdultFilterConfig(id_col="id", calibrate=labels, label_col="adult", fit_probe=True, seed=seed),
            )
            flags = pl.read_parquet(run / "flagged.parquet")
            b = ~in_a
            assert flags["id"].to_list() == ids.tolist()
            p, r, _ = pr(flags["flagged"].to_numpy()[b], y_all[b])
            margin = flags["zero_shot_score"].to_numpy()
            stats.append(
                (
                    p,
                    r,
                    p >= 0.9,
                    recall_at_precision(flags["adult_score"].to_numpy()[b], y_all[b], 0.9),
                    recall_at_precision(
                        linear_probe(vectors, margin, np.r_[pos, neg], y_all[np.r_[pos, neg]], seed)[b], y_all[b], 0.9
                    ),
                    recall_at_precision(margin[b], y_all[b], 0.9),
                    m["base_rate"]["with_probe"]["estimated"],
                )
            )
        mean = np.mean(stats, axis=0)
        curve.add_row(
            f"{k}",
            f"{11 * k}",
            f"{mean[0]:.3f}",
            f"{mean[1]:.3f}",
            f"{mean[2]:.0%}",
            f"{mean[3]:.3f}",
            f"{mean[4]:.3f}",
            f"{mean[3] / mean[4]:.2f}x",
            f"{mean[5]:.3f}",
            f"{mean[6]:.3f}",
        )
        console.print(f"done k={k}")
    console.print(curve)
    reuse_probe(args)


def reuse_probe(args: argparse.Namespace) -> None:
    """The k = 20 probes fitted on netmeds, reused (``--probe``) on the rare, 1 % and no-adult
    catalogs: the threshold chosen again at each catalog's base rate, beside the threshold the
    probe was fitted with (the baseline). Rows the probe was fitted on are left out. Precision
    and recall are pooled over the probes (all their flags together)."""
    table = Table(
        title=f"--probe fitted on netmeds (20 labelled adult rows), reused on other catalogs: {args.draws} probes; "
        "pooled P / R, mean flags (max), probes flagging nothing"
    )
    for col in ("catalog", "true rate", "base rate by the probe", "re-chosen threshold", "fitted threshold (baseline)"):
        table.add_column(col, justify="left" if col == "catalog" else "right")
    names = [*(f"rare_0.2pct_seed_{s}" for s in range(5)), "1pct", "no_adult"]
    for name in names:
        rows = []
        for seed in range(args.draws):
            run = args.work / f"reuse_{name}_s{seed}"
            m = api.filter_adult(
                args.work / f"run_{name}" / "embeddings",
                run,
                api.AdultFilterConfig(id_col="id", probe=args.work / f"probe_k20_s{seed}" / "adult_probe.npz"),
            )
            flags = pl.read_parquet(run / "flagged.parquet")
            fitted_on = set(pl.read_csv(args.work / f"labels_k20_s{seed}.csv", infer_schema=False)["id"].to_list())
            keep = ~flags["id"].is_in(list(fitted_on)).to_numpy()
            y = gold_of(args.work / f"{name}.csv", flags["id"].to_list())[keep]
            rechosen = flags["flagged"].to_numpy()[keep]
            fitted = flags["adult_score"].to_numpy()[keep] >= m["probe"]["fitted_threshold"]
            rows.append(
                (
                    (rechosen & y).sum(),
                    rechosen.sum(),
                    (fitted & y).sum(),
                    fitted.sum(),
                    y.sum(),
                    m["base_rate"]["with_probe"]["estimated"],
                    y.mean(),
                )
            )
        v = np.array(rows, dtype=float)

        def cell(tp: np.ndarray, flagged: np.ndarray, positives: np.ndarray) -> str:
            p = tp.sum() / max(flagged.sum(), 1)
            r = tp.sum() / max(positives.sum(), 1)
            return f"{p:.3f} / {r:.3f}, {flagged.mean():.1f} ({flagged.max():.0f}), {(flagged == 0).sum():.0f}"

        table.add_row(
            name,
            f"{v[:, 6].mean():.4f}",
            f"{v[:, 5].mean():.4f}",
            cell(v[:, 0], v[:, 1], v[:, 4]),
            cell(v[:, 2], v[:, 3], v[:, 4]),
        )
        console.print(f"done reuse {name}")
    console.print(table)


def linear_probe(vectors: np.ndarray, margin: np.ndarray, rows: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """The baseline few-shot probe (before the stacked one): scikit-learn logistic regression
    with balanced class weights on the vectors plus the margin over its catalog SD, ``C`` by
    cross-validated macro-F1 (:func:`eclip.classify.fit_probe`). Returns every row's
    probability of being adult."""
    features = np.hstack([vectors, (margin / margin.std())[:, None]]).astype(np.float32)
    probe, _ = fit_probe(features[rows], np.where(y, "adult", "other").tolist(), seed=seed, class_weight="balanced")
    return probe.proba(features)[:, probe.classes.index("adult")]


if __name__ == "__main__":
    main()
