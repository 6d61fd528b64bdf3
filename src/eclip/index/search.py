"""kNN self-join: every row's nearest neighbours among all rows."""

from __future__ import annotations

import numpy as np

from eclip.index.store import IndexDir
from eclip.progress import progress_bar


def knn_self_join(knn: IndexDir, xb: np.ndarray, k: int, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours of every indexed row, itself excluded.

    Args:
        knn: an index directory over ``xb`` (or anything with ``search(queries, k)``).
        xb: ``(n, d)`` float32, L2-normalised; row ``i`` must be vector ``i`` of the index.
        k: neighbours per row.
        batch: queries per search call.

    Returns:
        ``(scores, ids)``, both ``(n, k)``: float32 cosine similarity, and int64 row positions
        with ``-1`` padding where fewer than ``k`` other rows exist. Sorted best first.
    """
    n = len(xb)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    ids = np.full((n, k), -1, dtype=np.int64)
    kk = min(k + 1, max(n, 1))
    with progress_bar(f"searching {k} neighbours of {n:,} rows", n) as (bar, task):
        for s in range(0, n, batch):
            D, I = knn.search(xb[s : s + batch], kk)
            drop = (I < 0) | (I == np.arange(s, s + len(I))[:, None])
            order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept entries first, in rank order
            I, D = np.take_along_axis(I, order, 1), np.take_along_axis(D, order, 1)
            gone = np.take_along_axis(drop, order, 1)
            ids[s : s + len(I), : I.shape[1]] = np.where(gone, -1, I)
            scores[s : s + len(I), : D.shape[1]] = np.where(gone, -np.inf, D)
            bar.advance(task, len(I))
    return scores, ids
