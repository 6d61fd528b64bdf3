"""Language-agnostic candidates: exact cosine kNN over character n-gram TF-IDF, sparse.

The dense text kNN (MiniLM) proposes pairs only where the model understands the language. Two
titles that share character n-grams (``"Sepatu Lari Pria Hitam"`` / ``"sepatu lari pria, hitam"``,
``"Kühlschrank KG39"`` / ``"Kühlschrank kg-39"``, model codes) are near in TF-IDF space in any
language or script, so this source proposes them whatever the catalog's language.

Algorithm: the sparse product ``X[rows] @ X[rows].T`` computed block of query rows by block,
keeping only each row's top ``k + 1`` entries while multiplying (a max-heap per row, never the
dense row of scores), with ``sparse_dot_topn.sp_matmul_topn`` (ING Analytics,
https://github.com/ing-bank/sparse_dot_topn, v1.x; C++ with OpenMP threads). It is exact: the
result equals a brute-force top-k of the cosine matrix, up to the order of tied scores. Only
row pairs that share at least one n-gram get a score, so a pair with cosine 0 is never proposed.

Memory: the catalog's TF-IDF matrix, its transpose (same size), a transient copy of the
transpose's index arrays per block (``sp_matmul_topn`` casts them to its index dtype), one
accumulator of ``len(rows)`` floats and ints per thread, the block's ``block * (k + 1)`` results,
and the ``len(rows) * k`` neighbour table. Time grows with the posting lengths of the n-grams
each row holds, so frequent n-grams (``" th"``) dominate at large scale.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

#: Largest deviation from 1 accepted for the L2 norm of a non-empty row.
_NORM_TOL = 1e-3


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _check(x: object, rows: object, k: int, min_cosine: float, block: int) -> tuple[sp.csr_matrix, np.ndarray]:
    if not sp.issparse(x):
        raise TypeError(f"x must be a scipy sparse matrix, got {type(x).__name__}")
    xs = sp.csr_matrix(x)
    if not np.issubdtype(xs.dtype, np.floating) or xs.dtype.itemsize not in (4, 8):
        raise TypeError(f"x must be float32 or float64, got {xs.dtype}")
    r = np.asarray(rows)
    if r.ndim != 1 or (r.size and not np.issubdtype(r.dtype, np.integer)):
        raise ValueError(f"rows must be a 1-D integer array, got shape {r.shape} dtype {r.dtype}")
    r = r.astype(np.int64, copy=False)
    if r.size and (r.min() < 0 or r.max() >= xs.shape[0]):
        raise ValueError(f"rows must lie in [0, {xs.shape[0]}), got [{r.min()}, {r.max()}]")
    if r.size and np.unique(r).size != r.size:
        raise ValueError("rows must not repeat a row")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not 0.0 <= min_cosine <= 1.0:
        raise ValueError(f"min_cosine must lie in [0, 1], got {min_cosine}")
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    return xs, r


def tfidf_knn_table(
    x: sp.csr_matrix,
    rows: np.ndarray,
    k: int,
    min_cosine: float = 0.0,
    block: int = 16384,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest rows among ``rows`` by cosine, itself excluded, as a table.

    Args:
        x: ``(n, d)`` float32 or float64 sparse matrix (CSR preferred; other formats are
            converted), rows L2-normalised or all zero, as
            :meth:`eclip.encoders.CharNgramTfidf.fit_transform` returns.
        rows: ``(m,)`` integer catalog row positions (rows of ``x``) to search among, distinct.
        k: neighbours per row; more than ``m - 1`` gives every row that shares an n-gram.
        min_cosine: neighbours below this cosine are left out. Pairs with cosine 0 (no
            shared n-gram) are never returned.
        block: query rows per ``sp_matmul_topn`` call (bounds the per-call result to
            ``block * (k + 1)`` entries).
        n_threads: OpenMP threads; ``None`` uses every CPU this process may run on.

    Returns:
        ``(scores, ids)``, both ``(m, k)``: float32 cosine, and int64 catalog row positions
        (values of ``rows``) with ``-1`` (score ``-inf``) padding where fewer neighbours pass.
        Row ``i`` holds the neighbours of ``rows[i]``, best first. The same layout as
        :func:`eclip.index.knn_self_join`, except that ids are catalog positions.

    Raises:
        TypeError: ``x`` is not a scipy sparse matrix, or not float32/float64.
        ValueError: ``rows`` is not 1-D integer, out of range or repeats a row; ``k < 1``,
            ``block < 1`` or ``min_cosine`` outside [0, 1]; a row of ``x[rows]`` is neither
            L2-normalised nor empty.
    """
    from sparse_dot_topn import sp_matmul_topn

    xs, r = _check(x, rows, k, min_cosine, block)
    m = r.size
    scores = np.full((m, k), -np.inf, dtype=np.float32)
    ids = np.full((m, k), -1, dtype=np.int64)
    if m < 2:
        return scores, ids
    sub = xs[r]
    sub.sum_duplicates()
    norms = np.sqrt(np.asarray(sub.multiply(sub).sum(axis=1)).ravel())
    bad = (norms > 0) & (np.abs(norms - 1.0) > _NORM_TOL)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"x rows must be L2-normalised: row {r[i]} has norm {norms[i]:.4g} ({bad.sum()} such rows)")
    bt = sub.T.tocsr()  # (d, m): B as sp_matmul_topn wants it, transposed once rather than per call
    idx_dtype = np.int32 if max(sub.nnz, bt.nnz, m) < np.iinfo(np.int32).max else np.int64
    # sp_matmul_topn keeps scores strictly above `threshold`; min_cosine itself must pass
    threshold = float(np.nextafter(np.float32(min_cosine), np.float32(-1))) if min_cosine > 0 else 0.0
    threads = n_threads or _threads()
    top = min(k + 1, m)
    for s in range(0, m, block):
        e = min(m, s + block)
        c = sp_matmul_topn(
            sub[s:e], bt, top_n=top, threshold=threshold, sort=True, n_threads=threads, idx_dtype=idx_dtype
        )
        counts = np.diff(c.indptr)
        q = np.repeat(np.arange(e - s), counts)  # query row within the block, per entry
        pos = np.arange(c.indptr[-1]) - np.repeat(c.indptr[:-1], counts)  # 0-based place in its row
        nb = c.indices[: c.indptr[-1]].astype(np.int64)
        val = c.data[: c.indptr[-1]]
        is_self = nb == q + s
        self_pos = np.full(e - s, top, dtype=np.int64)
        self_pos[q[is_self]] = pos[is_self]
        rank0 = pos - (pos > self_pos[q])  # place among the row's other rows
        keep = ~is_self & (rank0 < k) & (val >= min_cosine)
        q, rank0, nb, val = q[keep], rank0[keep], nb[keep], val[keep]
        scores[s + q, rank0] = val
        ids[s + q, rank0] = r[nb]
    return scores, ids
