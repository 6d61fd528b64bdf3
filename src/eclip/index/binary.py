"""Hamming-distance search over 64-bit perceptual hashes with a FAISS binary index.

``faiss.IndexBinaryFlat`` is exact brute force over packed bits (popcount), fast enough for
millions of codes; see the FAISS wiki, "Binary indexes".
"""

from __future__ import annotations

import numpy as np


def hamming_knn(codes: np.ndarray, k: int, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Each code's ``k`` nearest other codes within ``max_distance`` bits.

    Args:
        codes: ``(n, 8)`` uint8 packed 64-bit codes.
        k: neighbours per row (the row itself excluded).
        max_distance: largest Hamming distance kept, bits.

    Returns:
        ``(distances, ids)``: ``(n, k)`` int32 bits and int64 row positions, nearest first;
        ``-1`` ids (and distance 65) where fewer than ``k`` neighbours are close enough.
    """
    import faiss

    n = len(codes)
    dist = np.full((n, k), 65, dtype=np.int32)
    ids = np.full((n, k), -1, dtype=np.int64)
    if n < 2:
        return dist, ids
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    kk = min(k + 1, n)
    d, i = index.search(codes, kk)
    # drop the row itself wherever ties put it, and everything too far; keep the order
    keep = (i != np.arange(n)[:, None]) & (i >= 0) & (d <= max_distance)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(keep, order, axis=1)
    m = order.shape[1]
    ids[:, :m] = np.where(kept, np.take_along_axis(i, order, axis=1), -1)
    dist[:, :m] = np.where(kept, np.take_along_axis(d, order, axis=1), 65)
    return dist, ids
