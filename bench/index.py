"""Benchmark eclip's autotuned index against exact Flat search and faiss HNSW, in one run.

Vectors: n embedding-like 384-d vectors (real MiniLM title embeddings of the shared catalogs,
expanded by perturbation; see ``bench/_vectors.py``). Queries: a held-out sample of the
indexed rows (not the sample nprobe was tuned on). For each index it prints build time
(training, adding and tuning included), bytes per vector and share of the float32 vectors,
queries per second (k = 10, one batch, all cores) and recall@10 against exact search, with
QPS as a ratio to exact Flat. Then it times the full self-kNN (k = 10, every row against all
rows) through eclip's index, beside the exact Flat time extrapolated from its measured QPS.

    uv run --frozen --extra cpu python bench/index.py [--n 1000000] [--queries 10000] [--no-hnsw]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from _vectors import base_vectors, expand  # noqa: E402

from eclip.index import build_index_dir, knn_self_join, open_index_dir, recall_at_k  # noqa: E402

console = Console(width=170)


def timed_search(index, q: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    ids = index.search(q, k)[1]
    return ids, len(q) / (time.perf_counter() - t0)


def eclip_row(x: np.ndarray, q_rows: np.ndarray, exact: np.ndarray, folder: Path, opq: bool) -> dict:
    t0 = time.perf_counter()
    m = build_index_dir(x, [str(i) for i in range(len(x))], folder, opq=opq, flat_max=0)
    build = time.perf_counter() - t0
    idx = open_index_dir(folder)
    got, qps = timed_search(idx, x[q_rows], 10)
    return {
        "name": f"eclip auto{' + OPQ' if opq else ''}",
        "params": f"{m['factory']}, nprobe {m['nprobe']}, k_factor {m['refine_k_factor']}",
        "build": build,
        "bytes": m["bytes"],
        "qps": qps,
        "recall": recall_at_k(got, exact),
        "idx": idx,
    }


def hnsw_row(x: np.ndarray, q_rows: np.ndarray, exact: np.ndarray, target: float) -> dict:
    index = faiss.index_factory(x.shape[1], "HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    with console.status(f"building HNSW32,Flat over {len(x):,} vectors"):
        for s in range(0, len(x), 100_000):
            index.add(x[s : s + 100_000])
    build = time.perf_counter() - t0
    for ef in (16, 32, 64, 128, 256, 512):
        index.hnsw.efSearch = ef
        got, qps = timed_search(index, x[q_rows], 10)
        recall = recall_at_k(got, exact)
        if recall >= target:
            break
    return {
        "name": "faiss HNSW",
        "params": f"HNSW32,Flat, efSearch {ef}",
        "build": build,
        "bytes": len(faiss.serialize_index(index)),
        "qps": qps,
        "recall": recall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=Path("runs/bench_cache"))
    ap.add_argument("--no-hnsw", action="store_true")
    ap.add_argument("--no-opq", action="store_true")
    ap.add_argument("--no-self-knn", action="store_true")
    ap.add_argument(
        "--hard", action="store_true", help="wider clouds: up to 50%% towards another title, noise norm 0.2-0.6"
    )
    args = ap.parse_args()

    base = base_vectors(args.data, args.cache)
    x = expand(base, args.n, mix=0.5, noise=(0.2, 0.6)) if args.hard else expand(base, args.n)
    n, d = x.shape
    console.print(
        f"{n:,} vectors, d = {d}, from {len(base):,} MiniLM title embeddings; {faiss.omp_get_max_threads()} threads"
    )
    q_rows = np.sort(np.random.default_rng(7).choice(n, args.queries, replace=False))

    flat = faiss.IndexFlatIP(d)
    t0 = time.perf_counter()
    flat.add(x)
    flat_build = time.perf_counter() - t0
    exact11, flat_qps = timed_search(flat, x[q_rows], 11)
    exact = exact11[:, :10]
    del flat
    rows = [
        {
            "name": "exact Flat (baseline)",
            "params": "IndexFlatIP",
            "build": flat_build,
            "bytes": 4 * d * n,
            "qps": flat_qps,
            "recall": 1.0,
        }
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(eclip_row(x, q_rows, exact, Path(tmp) / "auto", opq=False))
        if not args.no_opq:
            rows.append(eclip_row(x, q_rows, exact, Path(tmp) / "opq", opq=True))
        if not args.no_hnsw:
            rows.append(hnsw_row(x, q_rows, exact, 0.95))

        table = Table(title=f"index benchmark: n = {n:,}, d = {d}, {args.queries:,} held-out queries, k = 10")
        for col in (
            "index",
            "parameters",
            "build s",
            "bytes/vector",
            "% of float32",
            "QPS",
            "QPS vs Flat",
            "recall@10",
        ):
            table.add_column(col, justify="left" if col in ("index", "parameters") else "right")
        for r in rows:
            table.add_row(
                r["name"],
                r["params"],
                f"{r['build']:.1f}",
                f"{r['bytes'] / n:.0f}",
                f"{100 * r['bytes'] / (4 * d * n):.1f}",
                f"{r['qps']:,.0f}",
                f"{r['qps'] / flat_qps:.2f}x",
                f"{r['recall']:.4f}",
            )
        console.print(table)

        if not args.no_self_knn:
            t0 = time.perf_counter()
            _, nn = knn_self_join(rows[1]["idx"], x, 10, batch=65536)
            self_s = time.perf_counter() - t0
            want = [e[e != q][:10] for e, q in zip(exact11, q_rows)]  # exact top-10 without the row itself
            rec = np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(nn[q_rows], want)])
            flat_self = n / flat_qps
            console.print(
                f"full self-kNN, k = 10, all {n:,} rows: eclip {self_s:.0f} s ({self_s / 60:.1f} min); exact Flat "
                f"{flat_self:.0f} s extrapolated from its QPS ({flat_self / self_s:.1f}x slower); "
                f"recall@10 of the self-join on the {len(q_rows):,} sampled rows {rec:.4f} (against the exact top-10 other rows)"
            )


if __name__ == "__main__":
    main()
