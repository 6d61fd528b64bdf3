"""Average-linkage (UPGMA) agglomeration over a sparse graph of scored candidate pairs.

Groups grow past two rows, but only while the *average* score between two groups, over every
pair of their rows, stays at or above the threshold. A pair that is not a candidate counts
with ``missing`` (default 0: no evidence of a match). So two products
linked by one strong pair (A~B, B~C with A and C unlike) are not chained together, which is
what connected components do (Sokal and Michener, 1958; for entity resolution, Hassanzadeh et
al., "Framework for evaluating clustering algorithms in duplicate detection", VLDB 2009, which
measures it against components and correlation clustering).

Algorithm: a max-heap of group pairs keyed by their known average score, with lazy updates
(an entry is re-checked against the current groups when popped). Merging moves the smaller
group's neighbour table into the larger one. With ``p`` candidate pairs and largest group
``s``, it does ``O(p log p)`` heap operations and ``O(p s)`` neighbour updates in the worst
case (near-linear in ``p`` while groups stay small, as product groups do). No dense
``n x n`` matrix is made.

:func:`average_linkage` runs it block by block. When the threshold is above ``missing``, two
groups can only merge through a pair scoring at least the threshold (an average of values
below it stays below it), so every group lies inside one connected component of the pairs at
or above the threshold, and components never interact: each is linked on its own, with only
its inside pairs. A component of two rows is one merge; a component of up to
:data:`DENSE_MAX` rows is UPGMA on its dense distance matrix (``1 - score``, non-candidates at
``1 - missing``) by scipy's compiled ``linkage(method="average")``, cut at ``1 - threshold``
(average linkage has no inversions, so the cut is where the greedy merging stops); a larger
one (a chain of look-alikes) runs the heap on its own pairs. The groups are those of the heap
over all pairs, up to the order of exactly tied merges.

Scoring the non-candidate pairs of a merge exactly, instead of counting them as ``missing``,
was measured too: it let groups grow (WDC Products recall 0.63 vs 0.38) but lost more
precision (pairwise F1 0.42 vs 0.46), so it is not offered.
"""

from __future__ import annotations

import heapq

import numpy as np
import scipy.sparse as sp
from scipy.cluster.hierarchy import linkage
from scipy.sparse.csgraph import connected_components

#: Largest block linked on a dense distance matrix (``DENSE_MAX**2`` float64 at most, 32 MB).
DENSE_MAX = 2000
#: Scores are clipped to [-FAR, FAR]: an infinite score (``-inf``: never link) becomes finite.
FAR = 1e6
#: Small blocks are linked together, this many rows at a time (one compiled call, not one each).
PACK = 256


def average_linkage(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    threshold: float,
    missing: float = 0.0,
    cannot: set[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Group ``n`` rows by average linkage over scored pairs, block by block (this module's
    docstring): the groups of :func:`heap_average_linkage`, in compiled code where it can.

    Args:
        n: number of rows; rows in no pair stay alone.
        a, b: ``(p,)`` int64 row positions of the candidate pairs (a repeated pair counts
            once, with its best score).
        score: ``(p,)`` float32 pair scores (e.g. match probabilities); NaN counts as
            ``missing``.
        threshold: two groups merge while their average pair score is >= this.
        missing: the score of a pair that is not a candidate.
        cannot: pairs of rows ``(i, j)`` (``i < j``) that must end in different groups (then,
            or with a threshold at or below ``missing``, the heap runs over every pair).

    Returns:
        ``(n,)`` int64 group label per row: the smallest row position in its group.

    Raises:
        ValueError: ``a``, ``b`` and ``score`` differ in length.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    s = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=missing)
    if not len(a) == len(b) == len(s):
        raise ValueError(f"{len(a)}, {len(b)} and {len(s)} pairs in a, b and score; they must be as many.")
    if cannot or threshold <= missing:
        return heap_average_linkage(n, a, b, s, threshold, missing, cannot)
    s = np.clip(s, -FAR, FAR)  # -inf (never link) stays far below any threshold, and finite for scipy
    keep = a != b
    a, b, s = a[keep], b[keep], s[keep]
    strong = s >= threshold
    graph = sp.coo_matrix((np.ones(int(strong.sum()), dtype=np.int8), (a[strong], b[strong])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    labels = np.arange(n, dtype=np.int64)
    inside = comp[a] == comp[b]
    a, b, s = a[inside], b[inside], s[inside]
    sizes = np.bincount(comp, minlength=comp.max() + 1 if n else 0)
    pair_comp = comp[a]
    two = sizes[pair_comp] == 2  # one pair at or above the threshold: one merge
    labels[np.maximum(a[two], b[two])] = np.minimum(a[two], b[two])
    a, b, s, pair_comp = a[~two], b[~two], s[~two], pair_comp[~two]
    order = np.argsort(pair_comp, kind="stable")
    a, b, s, pair_comp = a[order], b[order], s[order], pair_comp[order]
    starts = np.flatnonzero(np.r_[True, pair_comp[1:] != pair_comp[:-1]]) if len(a) else np.zeros(0, np.int64)
    merged: list[np.ndarray] = []  # (2, e) row pairs each block joins
    row_order = np.argsort(comp, kind="stable")  # each component's rows, sorted, side by side
    offsets = np.r_[0, np.cumsum(sizes)]
    batch: list[tuple[np.ndarray, int, int]] = []  # small blocks linked together (disjoint rows)
    batched = 0  # rows in the batch
    for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), len(a)]):
        c = int(pair_comp[lo])
        rows = row_order[offsets[c] : offsets[c + 1]]
        if len(rows) > DENSE_MAX:
            block = heap_average_linkage(n, a[lo:hi], b[lo:hi], s[lo:hi], threshold, missing)
            merged.append(np.stack([rows, block[rows]]))
            continue
        if batch and batched + len(rows) > PACK:
            merged.append(_dense_blocks(batch, a, b, s, threshold, missing))
            batch, batched = [], 0
        batch.append((rows, lo, hi))
        batched += len(rows)
    if batch:
        merged.append(_dense_blocks(batch, a, b, s, threshold, missing))
    if merged:
        edges = np.concatenate(merged, axis=1)
        graph = sp.coo_matrix((np.ones(edges.shape[1], dtype=np.int8), (edges[0], edges[1])), shape=(n, n))
        _, groups = connected_components(graph, directed=False)
        first = np.full(groups.max() + 1, n, dtype=np.int64)
        np.minimum.at(first, groups, np.arange(n, dtype=np.int64))
        joined = np.zeros(n, dtype=bool)
        joined[edges.ravel()] = True
        labels[joined] = first[groups[joined]]
    return labels


def _dense_blocks(
    blocks: list[tuple[np.ndarray, int, int]],
    a: np.ndarray,
    b: np.ndarray,
    s: np.ndarray,
    threshold: float,
    missing: float,
) -> np.ndarray:
    """The merges average linkage makes in some blocks, linked together in one dense matrix.

    Each block is ``(rows, lo, hi)``: its sorted rows and the slice of ``a, b, s`` holding its
    pairs. scipy's UPGMA runs on distances ``top - score`` (non-candidates, and pairs of two
    blocks, at ``top - missing``) up to the height ``top - threshold``: pairs of two blocks
    average ``top - missing``, above that height, so blocks never join and linking them
    together gives each block's own merges.

    Returns:
        ``(2, e)`` int64 row pairs, one per merge kept (each joins a row of either side);
        the groups are their connected components.
    """
    rows = np.sort(np.concatenate([r for r, _, _ in blocks]))
    pa = np.concatenate([a[lo:hi] for _, lo, hi in blocks])
    pb = np.concatenate([b[lo:hi] for _, lo, hi in blocks])
    ps = np.concatenate([s[lo:hi] for _, lo, hi in blocks])
    m = len(rows)
    i, j = np.searchsorted(rows, pa), np.searchsorted(rows, pb)
    best = np.full((m, m), np.nan, dtype=np.float64)
    np.fmax.at(best, (i, j), ps)  # a repeated pair keeps its best score
    best = np.fmax(best, best.T)
    best[np.isnan(best)] = missing
    top = max(float(best.max()), missing, threshold) + 1.0  # distances >= 1 > 0
    upper = np.triu_indices(m, 1)
    z = linkage(top - best[upper], method="average")
    kept = int(np.searchsorted(z[:, 2], top - threshold, side="right"))  # heights ascend: no inversions
    rep = np.empty(2 * m - 1, dtype=np.int64)  # a row of each cluster: leaves, then merges
    rep[:m] = rows
    left, right = z[:kept, 0].astype(np.int64), z[:kept, 1].astype(np.int64)
    for k, x in enumerate(left.tolist()):
        rep[m + k] = rep[x]
    return np.stack([rep[left], rep[right]])


def heap_average_linkage(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    threshold: float,
    missing: float = 0.0,
    cannot: set[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Group ``n`` rows by average linkage over scored pairs: the heap algorithm of this
    module's docstring, in Python. :func:`average_linkage` gives the same groups faster; this
    one is kept for cannot-links and as the reference the tests compare against.

    Args:
        n: number of rows; rows in no pair stay alone.
        a, b: ``(p,)`` int64 row positions of the candidate pairs (each pair once).
        score: ``(p,)`` float32 pair scores (e.g. match probabilities); NaN counts as
            ``missing``.
        threshold: two groups merge while their average pair score is >= this.
        missing: the score of a pair that is not a candidate.
        cannot: pairs of rows ``(i, j)`` (``i < j``) that must end in different groups.

    Returns:
        ``(n,)`` int64 group label per row: the smallest row position in its group.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    s = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=missing)
    members: dict[int, list[int]] = {}
    # neighbour tables: group -> {other group: [sum of known scores, number of known pairs]}
    nbr: dict[int, dict[int, list[float]]] = {}
    for i, j, v in zip(a.tolist(), b.tolist(), s.tolist()):
        if i == j:
            continue
        for x, y in ((i, j), (j, i)):
            t = nbr.setdefault(x, {})
            e = t.get(y)
            if e is None:
                t[y] = [v, 1]
            else:  # a repeated pair: keep the best score
                e[0] = max(e[0], v)
    for x in nbr:
        members[x] = [x]
    blocked = {(min(p), max(p)) for p in (cannot or set())}

    def value(x: int, y: int) -> float:
        tot, cnt = nbr[x][y]
        pairs = len(members[x]) * len(members[y])
        return (tot + missing * (pairs - cnt)) / pairs

    heap = [(-value(x, y), x, y) for x in nbr for y in nbr[x] if x < y]
    heapq.heapify(heap)
    while heap:
        neg, x, y = heapq.heappop(heap)
        if -neg < threshold:
            break
        if x not in nbr or y not in nbr or y not in nbr[x]:
            continue  # a group that merged away
        current = value(x, y)
        if abs(current + neg) > 1e-12:
            if current >= threshold:
                heapq.heappush(heap, (-current, x, y))
            continue
        if blocked and any((min(i, j), max(i, j)) in blocked for i in members[x] for j in members[y]):
            continue
        # merge the smaller group into the larger
        big, small = (x, y) if len(members[x]) >= len(members[y]) else (y, x)
        members[big].extend(members.pop(small))
        table = nbr.pop(small)
        del table[big]
        del nbr[big][small]
        for z, (tot, cnt) in table.items():
            zt = nbr[z]
            del zt[small]
            e = nbr[big].get(z)
            if e is None:
                nbr[big][z] = [tot, cnt]
            else:
                e[0] += tot
                e[1] += cnt
            zt[big] = nbr[big][z]
        for z in nbr[big]:
            v = value(big, z)
            if v >= threshold:
                heapq.heappush(heap, (-v, min(big, z), max(big, z)))
    labels = np.arange(n, dtype=np.int64)
    for rows in members.values():
        labels[rows] = min(rows)
    return labels
