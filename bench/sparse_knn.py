"""Benchmark the sparse TF-IDF kNN candidate source (``eclip.matcher.candidates.tfidf_knn`` over ``eclip.index.sparse_knn.tfidf_knn_table``).

Two data sets, both char 3-5-gram TF-IDF (``eclip.encoders.CharNgramTfidf``) over product titles:

1. WDC Products offers (``wdc_products/offers.csv``, column ``title``, 10,000 rows): the full
   self-kNN (k = 10) through ``sparse_dot_topn.sp_matmul_topn`` (the library path) and through
   exact brute force (scikit-learn ``NearestNeighbors(algorithm="brute", metric="cosine")`` on
   the sparse matrix), in the same run. Prints rows/s of each (best of ``--repeat`` runs), their ratio, and recall@k of the
   library against brute force.
2. A synthetic catalog of ``--scale`` rows (WDC titles repeated with random character edits and
   word drops/swaps): the library path only; recall@k measured on ``--queries`` sampled rows
   against an exact top-k of ``X[q] @ X.T`` (dense per chunk of queries).

recall@k: share of the exact top-k neighbours (cosine > 0) the library returns; "tie-aware"
also counts a returned neighbour whose cosine equals the exact k-th cosine (within 1e-6), since
which of several tied rows fills the last places is arbitrary for both methods.

    uv run --frozen --extra cpu python bench/sparse_knn.py [--data ../shared/data] [--scale 200000]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from eclip.encoders import CharNgramTfidf
from eclip.index.sparse_knn import tfidf_knn_table
from eclip.matcher.candidates import tfidf_knn


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    have = [f for f in ("avx2", "avx512f", "avx512_vnni") if f in flags]
    return f"{model}; flags: {' '.join(have) or 'none of avx2/avx512f/avx512_vnni'}"


def threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def exact_topk(x: sp.csr_matrix, queries: np.ndarray, k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``x[queries] @ x.T``, self excluded: ``(scores, ids)`` ``(q, k)``, -1 / -inf padding
    where fewer than k rows have cosine > 0."""
    xt = x.T.tocsc()
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for s in range(0, len(queries), chunk):
        q = queries[s : s + chunk]
        d = np.asarray((x[q] @ xt).todense())
        d[np.arange(len(q)), q] = -np.inf
        top = np.argpartition(-d, k, axis=1)[:, :k]
        val = np.take_along_axis(d, top, 1)
        order = np.argsort(-val, axis=1, kind="stable")
        top, val = np.take_along_axis(top, order, 1), np.take_along_axis(val, order, 1)
        ok = val > 0
        ids[s : s + len(q)] = np.where(ok, top, -1)
        scores[s : s + len(q)] = np.where(ok, val, -np.inf)
    return scores, ids


def recall(
    x: sp.csr_matrix, queries: np.ndarray, got_ids: np.ndarray, ex_ids: np.ndarray, ex_scores: np.ndarray
) -> tuple[float, float]:
    """(plain, tie-aware) recall@k of the ``got_ids`` table against the exact ``ex`` tables (same
    query rows). Tie-aware recomputes each returned pair's cosine from ``x`` (not trusting the
    library's score) and counts it when it reaches the exact k-th cosine less 1e-6."""
    q = np.repeat(queries, got_ids.shape[1])
    g = got_ids.reshape(-1)
    ok = g >= 0
    true = np.full(g.shape, -np.inf)
    true[ok] = np.asarray(x[q[ok]].multiply(x[g[ok]]).sum(axis=1)).ravel()
    true = true.reshape(got_ids.shape)
    hit = tie = total = 0
    for gi, ts, ei, es in zip(got_ids, true, ex_ids, ex_scores):
        want = ei[ei >= 0]
        total += len(want)
        hit += len(set(gi[gi >= 0].tolist()) & set(want.tolist()))
        if len(want):
            tie += min(len(want), int(np.sum(ts >= es[len(want) - 1] - 1e-6)))
    return hit / max(total, 1), tie / max(total, 1)


def edit(title: str, rng: np.random.Generator) -> str:
    words = title.split()
    if len(words) > 3 and rng.random() < 0.3:
        del words[int(rng.integers(0, len(words)))]
    if len(words) > 3 and rng.random() < 0.2:
        i = int(rng.integers(0, len(words) - 1))
        words[i], words[i + 1] = words[i + 1], words[i]
    chars = list(" ".join(words))
    for _ in range(int(rng.integers(0, 4))):
        i = int(rng.integers(0, max(len(chars), 1)))
        op = rng.integers(0, 3)
        c = chr(int(rng.integers(97, 123)))
        if op == 0 and chars:
            chars[min(i, len(chars) - 1)] = c
        elif op == 1:
            chars.insert(i, c)
        elif chars:
            del chars[min(i, len(chars) - 1)]
    return "".join(chars)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--scale", type=int, default=200_000, help="rows of the synthetic catalog (0: skip)")
    ap.add_argument("--queries", type=int, default=2000, help="rows whose recall is checked at scale")
    ap.add_argument("--block", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=3, help="10k timings: best of this many runs")
    args = ap.parse_args()
    k, nt = args.k, threads()
    import sparse_dot_topn

    print(f"CPU: {cpu_flags()}; {nt} usable CPUs; Python {platform.python_version()}")
    print(f"sparse_dot_topn {sparse_dot_topn.__version__} (OpenMP: {sparse_dot_topn._has_openmp_support}); k = {k}")

    # 1. WDC Products titles, library vs exact brute force
    titles = pl.read_csv(args.data / "wdc_products" / "offers.csv", infer_schema=False)["title"].fill_null("").to_list()
    t0 = time.perf_counter()
    x = CharNgramTfidf().fit_transform(titles)
    n = x.shape[0]
    print(
        f"\nWDC Products: {n:,} titles, TF-IDF {x.shape[1]:,} n-grams, {x.nnz / n:.0f} nnz/row ({time.perf_counter() - t0:.1f} s)"
    )
    rows = np.arange(n)
    lib: dict[int, float] = {}
    for t in sorted({1, nt}):
        lib[t] = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            scores, ids = tfidf_knn_table(x, rows, k, block=args.block, n_threads=t)
            lib[t] = min(lib[t], time.perf_counter() - t0)
    t0 = time.perf_counter()
    a, b, rank = tfidf_knn(x, rows, k, block=args.block, n_threads=nt)
    t_pairs = time.perf_counter() - t0

    from sklearn.neighbors import NearestNeighbors

    t_brute = np.inf
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        nn = NearestNeighbors(n_neighbors=min(k + 1, n), algorithm="brute", metric="cosine", n_jobs=-1).fit(x)
        dist, nbr = nn.kneighbors(x)
        t_brute = min(t_brute, time.perf_counter() - t0)
    ex_ids = np.full((n, k), -1, dtype=np.int64)
    ex_scores = np.full((n, k), -np.inf, dtype=np.float32)
    for i in range(n):  # drop self (wherever a tie put it) and zero-cosine rows
        keep = (nbr[i] != i) & (1 - dist[i] > 1e-9)
        j, s = nbr[i][keep][:k], (1 - dist[i])[keep][:k]
        ex_ids[i, : len(j)], ex_scores[i, : len(j)] = j, s
    r_plain, r_tie = recall(x, rows, ids, ex_ids, ex_scores)
    print(
        f"  exact brute force (sklearn NearestNeighbors brute, {nt} jobs): {t_brute:.2f} s, {n / t_brute:,.0f} rows/s"
    )
    for t, sec in lib.items():
        print(
            f"  sparse_dot_topn, {t} thread(s): {sec:.2f} s, {n / sec:,.0f} rows/s = {t_brute / sec:.1f}x brute force"
        )
    print(f"  tfidf_knn (pairs, {nt} threads): {t_pairs:.2f} s -> {len(a):,} pairs, median rank {np.median(rank):.0f}")
    print(f"  recall@{k} vs brute force: {r_plain:.4f} (tie-aware {r_tie:.4f}; {n - len(set(titles)):,} titles repeat)")
    same = np.mean([set(g[g >= 0]) == set(e[e >= 0]) for g, e in zip(ids, ex_ids)])
    print(f"  rows whose neighbour set equals brute force exactly: {same:.4f}")

    # 2. synthetic scale, library path only
    if args.scale:
        rng = np.random.default_rng(0)
        base = [t for t in titles if t.strip()]
        src = rng.integers(0, len(base), args.scale)
        big = [edit(base[i], rng) for i in src]
        t0 = time.perf_counter()
        xb = CharNgramTfidf().fit_transform(big)
        nb = xb.shape[0]
        print(
            f"\nsynthetic: {nb:,} titles (WDC titles with random edits), TF-IDF {xb.shape[1]:,} n-grams, "
            f"{xb.nnz / nb:.0f} nnz/row ({time.perf_counter() - t0:.1f} s)"
        )
        t0 = time.perf_counter()
        sc, ids_b = tfidf_knn_table(xb, np.arange(nb), k, block=args.block, n_threads=nt)
        sec = time.perf_counter() - t0
        print(
            f"  sparse_dot_topn, {nt} thread(s): {sec:.1f} s, {nb / sec:,.0f} rows/s; peak RSS {peak_rss_gib():.2f} GiB"
        )
        q = np.sort(rng.choice(nb, min(args.queries, nb), replace=False))
        t0 = time.perf_counter()
        es, ei = exact_topk(xb, q, k)
        t_ex = time.perf_counter() - t0
        r_plain, r_tie = recall(xb, q, ids_b[q], ei, es)
        print(
            f"  recall@{k} on {len(q):,} sampled rows vs exact (dense X[q] @ X.T, {len(q) / t_ex:,.0f} rows/s, "
            f"i.e. {(len(q) / t_ex) / (nb / sec):.2f}x the library): {r_plain:.4f} (tie-aware {r_tie:.4f})"
        )


if __name__ == "__main__":
    main()
