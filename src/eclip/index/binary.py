"""Hamming-distance search over 64-bit perceptual hashes with a FAISS binary index.

``faiss.IndexBinaryFlat`` is exact brute force over packed bits (popcount), fast enough for
millions of codes; see the FAISS wiki, "Binary indexes".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Rows sharing one photo (within the distance) above this many are taken for a placeholder
#: ("no image", a shop logo): their pairs are left out, as ``--max-code-block`` does for codes.
MAX_PHOTO_BLOCK = 50


@dataclass(frozen=True)
class HammingPairs:
    """Every pair of codes within a Hamming distance.

    Attributes:
        a, b: ``(p,)`` int64 row positions, ``a < b``, each pair once.
        distance: ``(p,)`` int32 bits.
        crowded_rows: ``(c,)`` int64 rows with more than ``max_block`` near codes, whose
            pairs are left out (placeholders).
    """

    a: np.ndarray
    b: np.ndarray
    distance: np.ndarray
    crowded_rows: np.ndarray


def hamming_pairs(
    codes: np.ndarray, max_distance: int, max_block: int = MAX_PHOTO_BLOCK, batch: int = 65536
) -> HammingPairs:
    """All pairs of rows whose codes are within ``max_distance`` bits, however many rows share
    a photo (a range search, ``IndexBinaryFlat.range_search``, not a top-k that would drop
    the k+1-th listing of a photo; FAISS wiki, "Binary indexes" and "Range search").

    Args:
        codes: ``(n, 8)`` uint8 packed 64-bit codes.
        max_distance: largest Hamming distance kept, bits (0..64).
        max_block: a row with more near codes than this (itself excluded) is a placeholder:
            none of its pairs is kept.
        batch: queries per range search.

    Returns:
        :class:`HammingPairs`, sorted by ``(a, b)``.
    """
    import faiss

    n = len(codes)
    empty = np.zeros(0, np.int64)
    if n < 2:
        return HammingPairs(empty, empty, np.zeros(0, np.int32), empty)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    a_parts, b_parts, d_parts, crowded = [], [], [], []
    for lo in range(0, n, batch):
        lims, d, i = index.range_search(codes[lo : lo + batch], max_distance + 1)  # distance < radius
        counts = np.diff(lims).astype(np.int64)
        q = np.repeat(np.arange(lo, lo + len(counts)), counts)
        near = counts - 1  # the row itself is always within 0 bits
        big = np.flatnonzero(near > max_block) + lo
        crowded.append(big)
        keep = (i > q) & ~np.isin(q, big)
        a_parts.append(q[keep])
        b_parts.append(i[keep].astype(np.int64))
        d_parts.append(d[keep].astype(np.int32))
    crowded_rows = np.concatenate(crowded)
    a, b, d = np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(d_parts)
    ok = ~np.isin(b, crowded_rows)
    a, b, d = a[ok], b[ok], d[ok]
    order = np.lexsort((b, a))
    return HammingPairs(a[order], b[order], d[order], crowded_rows)
