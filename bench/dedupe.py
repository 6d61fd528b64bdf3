"""Benchmark `eclip dedupe` on both dev catalogs in one run: every grouping method with the
learned, the fixed and the calibrated threshold, the Fellegi-Sunter alternative to the score
mixture, and the TF-IDF baseline, all measured in the same run.

For each catalog it prints rows/s of every stage of eclip's default pipeline (cold embedding
cache), then pairwise precision, recall and F1 and B-cubed F1 of:

* eclip's default (``auto``: method and threshold learned from the catalog, no labels);
* each method (``mutual``, ``average``, ``components``) on the learned match probability
  (0.5), on the old fixed score threshold (0.6), and calibrated on the gold labels (the best
  threshold: an oracle, for reference only);
* Fellegi-Sunter match probabilities (u from random pairs, m by EM; splink's recipe) grouped
  at 0.5, beside the mixture's;
* the baseline: TF-IDF over character 3-5-grams, exact sparse top-k, mutual best match at its
  best threshold on the same labels (which flatters it).

    uv run python bench/dedupe.py [--data ../shared/data] [--only abt_buy]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from eclip import api
from eclip.catalog import load_catalog, pick_attribute_column
from eclip.encoders import CharNgramTfidf, extract_codes, load_embeddings
from eclip.encoders.lexical import extract_quantities
from eclip.evaluation import calibrate, cluster_metrics, load_gold
from eclip.evaluation.metrics import blocking_recall
from eclip.matcher import DEFAULT_THRESHOLD, group, knn_pairs
from eclip.matcher.comparisons import RowFeatures, normalise_brand, parse_price
from eclip.matcher.fellegi_sunter import fit_fellegi_sunter, random_pairs

#: name -> (catalog, gold file, gold column, catch-all gold labels)
CATALOGS = {
    "abt_buy": ("abt_buy/catalog.csv", "abt_buy/matches.csv", None, ()),
    "wdc_products": ("wdc_products/offers.csv", "wdc_products/offers.csv", "product_id", ()),
}
METHODS = ("mutual", "average", "components")


def tfidf_baseline(catalog: Path, gold: np.ndarray, k: int = 10) -> dict:
    """TF-IDF char 3-5-grams, exact sparse top-k, mutual best match at the best threshold."""
    t0 = time.perf_counter()
    cat = load_catalog(catalog)
    x = CharNgramTfidf().fit_transform(cat.texts)
    n = x.shape[0]
    ids = np.full((n, k), -1, dtype=np.int64)
    for s in range(0, n, 2048):
        sim = (x[s : s + 2048] @ x.T).toarray()
        sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -1
        ids[s : s + len(sim)] = np.argsort(-sim, axis=1)[:, :k]
    cand = knn_pairs(ids)
    a, b = cand["a"].to_numpy(), cand["b"].to_numpy()
    score = np.asarray(x[a].multiply(x[b]).sum(axis=1)).ravel().astype(np.float32)
    cal = calibrate(n, a, b, score, gold, "mutual")
    g = group(n, a, b, score, cal.threshold, "mutual")
    seconds = time.perf_counter() - t0
    rec = blocking_recall(a, b, cand["rank"].cast(pl.Float64).to_numpy(), gold, (10,))
    return {
        "metrics": cluster_metrics(g.labels, gold),
        "threshold": cal.threshold,
        "seconds": seconds,
        "recall@10": rec["recall@10"],
    }


def fellegi_sunter_probability(catalog: Path, run: Path, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """Match probabilities of the run's candidate pairs under a Fellegi-Sunter model learned
    without labels (comparison levels of :mod:`eclip.matcher.comparisons`), and the seconds."""
    t0 = time.perf_counter()
    cat = load_catalog(catalog)
    emb = load_embeddings(run / "embeddings")
    cols = cat.table.columns
    brand, price = pick_attribute_column(cols, "brand"), pick_attribute_column(cols, "price")
    feat = RowFeatures(
        emb.text,
        np.array([bool(t) for t in cat.texts]),
        CharNgramTfidf().fit_transform(cat.texts),
        [extract_codes(t) for t in cat.texts],
        [extract_quantities(t) for t in cat.texts],
        [normalise_brand(v) for v in cat.table[brand].cast(pl.String).to_list()] if brand else None,
        np.array([parse_price(v) for v in cat.table[price].cast(pl.String).to_list()]) if price else None,
    )
    ra, rb = random_pairs(len(cat), 200_000)
    model = fit_fellegi_sunter(feat.comparisons(), feat.levels(feat.signals(a, b)), feat.levels(feat.signals(ra, rb)))
    return model.match_probability(feat.levels(feat.signals(a, b))), time.perf_counter() - t0


def row(table: Table, label: str, threshold: str, m, base_f1: float) -> None:
    table.add_row(
        label,
        threshold,
        f"{m.precision:.4f}",
        f"{m.recall:.4f}",
        f"{m.f1:.4f}",
        f"{m.bcubed_f1:.4f}",
        f"{m.f1 / base_f1:.2f}" if base_f1 else "-",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--only", choices=sorted(CATALOGS), default=None)
    args = ap.parse_args()
    console = Console(width=150)
    for name, (cat_rel, gold_rel, gold_col, singles) in CATALOGS.items():
        if args.only and name != args.only:
            continue
        catalog = args.data / cat_rel
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            manifest = api.dedupe(catalog, run)
            ids = pl.read_parquet(run / "groups.parquet")["id"].to_list()
            gold = load_gold(args.data / gold_rel, ids, "id", gold_col, singles)
            default = cluster_metrics(pl.read_parquet(run / "groups.parquet")["group_id"].to_numpy(), gold)
            pairs = pl.read_parquet(run / "pairs.parquet")
            pos = {x: i for i, x in enumerate(ids)}
            a = np.array([pos[x] for x in pairs["id_a"].to_list()], dtype=np.int64)
            b = np.array([pos[x] for x in pairs["id_b"].to_list()], dtype=np.int64)
            score = pairs["score"].fill_null(float("-inf")).to_numpy()
            prob = pairs["match_probability"].fill_null(0.0).to_numpy()
            fs_prob, fs_seconds = fellegi_sunter_probability(catalog, run, a, b)
        n = len(ids)
        base = tfidf_baseline(catalog, gold)
        m = manifest["matching"]

        stages = Table(title=f"{name}: rows/s per stage ({n:,} rows, CPU, cold embedding cache)")
        for col in ("stage", "eclip rows/s", "seconds"):
            stages.add_column(col, justify="right" if col != "stage" else "left")
        for stage, sec in manifest["timings_s"].items():
            stages.add_row(stage, f"{n / sec:,.0f}" if sec > 0 else "-", f"{sec:.2f}")
        stages.add_row(
            "[dim]Fellegi-Sunter features + EM (not in the default)[/]", f"{n / fs_seconds:,.0f}", f"{fs_seconds:.2f}"
        )
        stages.add_row("[dim]baseline total (TF-IDF)[/]", f"{n / base['seconds']:,.0f}", f"{base['seconds']:.2f}")
        stages.add_row("[dim]eclip / baseline time[/]", "", f"{manifest['timings_s']['total'] / base['seconds']:.1f}x")
        console.print(stages)

        bf1 = base["metrics"].f1
        quality = Table(title=f"{name}: quality (gold: {gold_rel}{' column ' + gold_col if gold_col else ''})")
        for col in ("grouping", "threshold", "P", "R", "pair F1", "B3 F1", "F1 / base"):
            quality.add_column(col, justify="left" if col == "grouping" else "right")
        row(quality, "TF-IDF baseline, mutual (best t on gold)", f"{base['threshold']:.3f}", base["metrics"], bf1)
        row(
            quality,
            f"[bold]eclip default: auto -> {m['method_used']}[/]",
            f"p {m['threshold']:.2f}" if m["threshold_on"] == "match_probability" else f"{m['threshold']:.3f}",
            default,
            bf1,
        )
        for method in METHODS:
            row(
                quality,
                f"{method}, learned (mixture p >= 0.5)",
                "p 0.50",
                cluster_metrics(group(n, a, b, prob, 0.5, method).labels, gold),
                bf1,
            )
            row(
                quality,
                f"{method}, fixed score threshold",
                f"{DEFAULT_THRESHOLD:.3f}",
                cluster_metrics(group(n, a, b, score, DEFAULT_THRESHOLD, method).labels, gold),
                bf1,
            )
            cal = calibrate(n, a, b, score, gold, method, steps=41)
            row(
                quality,
                f"[dim]{method}, calibrated on gold (oracle)[/]",
                f"{cal.threshold:.3f}",
                cluster_metrics(group(n, a, b, score, cal.threshold, method).labels, gold),
                bf1,
            )
            row(
                quality,
                f"{method}, Fellegi-Sunter p >= 0.5",
                "p 0.50",
                cluster_metrics(group(n, a, b, fs_prob, 0.5, method).labels, gold),
                bf1,
            )
        console.print(quality)
        learned = m["learned"]
        console.print(f"learned on {name}: mixture {learned['mixture']}; {learned['method_chosen_by']}\n")


if __name__ == "__main__":
    main()
