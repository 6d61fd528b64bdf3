"""Benchmark `eclip dedupe` against the TF-IDF baseline, measured in the same run.

For each catalog it prints rows/s of every stage of eclip's pipeline, then pairwise F1,
B-cubed F1 and blocking recall@10, beside the baseline of the issue's table: TF-IDF over
character 3-5-grams, exact sparse top-k, mutual best match. Thresholds are fixed in advance
(eclip's default; the baseline gets its best threshold on the same labels, which flatters it).

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
from eclip.catalog import load_catalog
from eclip.encoders import CharNgramTfidf
from eclip.evaluation import calibrate, cluster_metrics, load_gold
from eclip.evaluation.metrics import blocking_recall
from eclip.matcher import group, knn_pairs

CATALOGS = {
    "abt_buy": ("abt_buy/catalog.csv", "abt_buy/matches.csv", None, ()),
    "wdc_products": ("wdc_products/offers.csv", "wdc_products/offers.csv", "cluster_id", ("2432",)),
}


def tfidf_baseline(catalog: Path, gold: np.ndarray, k: int = 10) -> dict:
    t0 = time.perf_counter()
    cat = load_catalog(catalog)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = CharNgramTfidf().fit_transform(cat.texts)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = x.shape[0]
    ids = np.full((n, k), -1, dtype=np.int64)
    for s in range(0, n, 2048):
        sim = (x[s : s + 2048] @ x.T).toarray()
        sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -1
        ids[s : s + len(sim)] = np.argsort(-sim, axis=1)[:, :k]
    cand = knn_pairs(ids)
    a, b = cand["a"].to_numpy(), cand["b"].to_numpy()
    score = np.asarray(x[a].multiply(x[b]).sum(axis=1)).ravel().astype(np.float32)
    t_search = time.perf_counter() - t0
    cal = calibrate(n, a, b, score, gold, "mutual")
    t0 = time.perf_counter()
    g = group(n, a, b, score, cal.threshold, "mutual")
    t_group = time.perf_counter() - t0
    m = cluster_metrics(g.labels, gold)
    rec = blocking_recall(a, b, cand["rank"].cast(pl.Float64).to_numpy(), gold, (10,))
    return {
        "stages": {"read": t_read, "tfidf": t_vec, "search": t_search, "group": t_group},
        "f1": m.f1, "bcubed_f1": m.bcubed_f1, "recall@10": rec["recall@10"], "threshold": cal.threshold, "rows": n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--only", choices=sorted(CATALOGS), default=None)
    args = ap.parse_args()
    console = Console()
    for name, (cat_rel, gold_rel, gold_col, singles) in CATALOGS.items():
        if args.only and name != args.only:
            continue
        catalog = args.data / cat_rel
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            manifest = api.dedupe(catalog, run)
            result = api.evaluate(run / "groups.parquet", args.data / gold_rel, gold_col=gold_col, singleton_clusters=singles)
            ids = pl.read_parquet(run / "groups.parquet")["id"].to_list()
            # ablation: the embedding alone (cached embeddings are reused), same fixed threshold
            api.dedupe(catalog, run, api.DedupeConfig(lexical=False))
            emb_only = api.evaluate(run / "groups.parquet", args.data / gold_rel, gold_col=gold_col, singleton_clusters=singles)
        gold = load_gold(args.data / gold_rel, ids, "id", gold_col, singles)
        base = tfidf_baseline(catalog, gold)
        n = manifest["counts"]["rows"]

        stages = Table(title=f"{name}: rows/s per stage ({n:,} rows, CPU, cold embedding cache)")
        stages.add_column("stage")
        stages.add_column("eclip rows/s", justify="right")
        stages.add_column("seconds", justify="right")
        for stage, sec in manifest["timings_s"].items():
            stages.add_row(stage, f"{n / sec:,.0f}" if sec > 0 else "-", f"{sec:.2f}")
        base_total = sum(base["stages"].values())
        stages.add_row("[dim]baseline total (TF-IDF)[/]", f"{n / base_total:,.0f}", f"{base_total:.2f}")
        eclip_total = manifest["timings_s"]["total"]
        stages.add_row("[dim]eclip / baseline time[/]", "", f"{eclip_total / base_total:.1f}x")
        console.print(stages)

        m = result["metrics"]
        quality = Table(title=f"{name}: quality (gold: {gold_rel})")
        quality.add_column("method")
        for col in ("threshold", "pair F1", "B3 F1", "recall@10", "F1 / base"):
            quality.add_column(col, justify="right")
        quality.add_row("baseline: TF-IDF, best t", f"{base['threshold']:.3f}", f"{base['f1']:.4f}", f"{base['bcubed_f1']:.4f}", f"{base['recall@10']:.4f}", "1.00")
        quality.add_row(
            f"eclip ({manifest['matching']['method']})",
            f"{manifest['matching']['threshold']:.3f}",
            f"{m['f1']:.4f}",
            f"{m['bcubed_f1']:.4f}",
            f"{result['blocking']['recall@10']:.4f}",
            f"{m['f1'] / base['f1']:.2f}" if base["f1"] else "-",
        )
        e = emb_only["metrics"]
        quality.add_row(
            "eclip, embedding only",
            f"{manifest['matching']['threshold']:.3f}",
            f"{e['f1']:.4f}",
            f"{e['bcubed_f1']:.4f}",
            f"{emb_only['blocking']['recall@10']:.4f}",
            f"{e['f1'] / base['f1']:.2f}" if base["f1"] else "-",
        )
        console.print(quality)


if __name__ == "__main__":
    main()
