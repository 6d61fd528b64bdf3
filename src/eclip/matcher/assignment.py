"""Assigning matches between two catalogs (record linkage, splink's ``link_only``).

Every function takes the candidate pairs between a LEFT catalog of ``nl`` rows and a RIGHT
catalog of ``nr`` rows: ``left[p]`` in ``[0, nl)``, ``right[p]`` in ``[0, nr)``, and a weight
per pair (a match probability or score), already limited to the pairs above the threshold.
A pair within one catalog cannot be expressed, so none is ever produced.

* :func:`one_to_one`: a maximum-weight bipartite matching, solved exactly by
  ``scipy.optimize.linear_sum_assignment`` (the Hungarian method, Jonker-Volgenant variant)
  on each connected component of the candidate graph. Greedy best-first choice is not
  optimal: it can take one strong pair that blocks two others whose sum is larger.
* :func:`mutual_best`: a pair when each row is the other's best (the greedy variant).
* :func:`one_to_many`: each RIGHT row to its best LEFT row (a supplier feed against a catalog
  that may list a product once, offered many times on the right).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

from eclip.matcher.grouping import expected_matches

#: Components with more cells than this are matched by :func:`mutual_best` instead of the
#: exact assignment (its dense cost matrix would not fit; real candidate graphs are far
#: smaller).
MAX_DENSE_CELLS = 25_000_000

#: How ``eclip link`` assigns rows across the two sources.
LinkMode = Literal["one-to-one", "one-to-many", "many-to-many"]
MODES: tuple[str, ...] = get_args(LinkMode)


def _components(nl: int, nr: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    graph = sp.coo_matrix((np.ones(len(left), np.int8), (left, nl + right)), shape=(nl + nr, nl + nr))
    return connected_components(graph, directed=False)[1]


def expected_one_to_one_links(nl: int, nr: int, left: np.ndarray, right: np.ndarray, probability: np.ndarray) -> float:
    """The links the match model expects under one-to-one linkage: each row takes part in at
    most one link, so a row expects ``min(1, sum of its pairs' probabilities)`` links
    (:func:`eclip.matcher.grouping.expected_matches` over both sides), and the count is the
    smaller of the two sides' sums.

    Args:
        nl, nr: rows per side. left, right: ``(p,)`` int64 cross pairs. probability: ``(p,)``
            match probabilities (NaN counts 0).

    Returns:
        The expected number of links (float).
    """
    per_row = np.minimum(expected_matches(nl + nr, left, nl + np.asarray(right, np.int64), probability), 1.0)
    return float(min(per_row[:nl].sum(), per_row[nl:].sum()))


def mutual_best(nl: int, nr: int, left: np.ndarray, right: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``(p,)`` bool: the pairs where each row is the other's highest-weight pair (ties go to
    the lower row position)."""
    keep = np.zeros(len(left), dtype=bool)
    if not len(left):
        return keep
    best_l = _best(left, weight, right, nl)
    best_r = _best(right, weight, left, nr)
    keep = (best_l[left] == right) & (best_r[right] == left)
    return keep


def _best(rows: np.ndarray, weight: np.ndarray, other: np.ndarray, n: int) -> np.ndarray:
    """Each row's highest-weight partner (``-1`` for none)."""
    best = np.full(n, -1, dtype=np.int64)
    order = np.lexsort((other, -weight, rows))
    first = np.ones(len(order), dtype=bool)
    first[1:] = rows[order][1:] != rows[order][:-1]
    best[rows[order][first]] = other[order][first]
    return best


def one_to_one(nl: int, nr: int, left: np.ndarray, right: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A maximum-weight one-to-one matching of the candidate pairs.

    Args:
        nl, nr: rows of each catalog. left, right: ``(p,)`` int64 row positions.
        weight: ``(p,)`` positive weights (e.g. match probabilities above the threshold).

    Returns:
        ``(p,)`` bool, the pairs in the matching: each row in at most one, and the sum of
        their weights the largest possible (per component; components over
        :data:`MAX_DENSE_CELLS` cells fall back to :func:`mutual_best`).
    """
    left = np.asarray(left, np.int64)
    right = np.asarray(right, np.int64)
    weight = np.asarray(weight, np.float64)
    keep = np.zeros(len(left), dtype=bool)
    if not len(left):
        return keep
    comp = _components(nl, nr, left, right)[left]
    order = np.argsort(comp, kind="stable")
    bounds = np.flatnonzero(np.diff(comp[order])) + 1
    for edges in np.split(order, bounds):
        if len(edges) == 1:
            keep[edges] = True
            continue
        ls, li = np.unique(left[edges], return_inverse=True)
        rs, ri = np.unique(right[edges], return_inverse=True)
        if len(ls) * len(rs) > MAX_DENSE_CELLS:
            keep[edges] = mutual_best(nl, nr, left[edges], right[edges], weight[edges])
            continue
        w = np.zeros((len(ls), len(rs)))
        w[li, ri] = weight[edges]
        rows, cols = linear_sum_assignment(w, maximize=True)
        chosen = {(int(r), int(c)) for r, c in zip(rows, cols) if w[r, c] > 0}
        keep[edges] = [(int(x), int(y)) in chosen for x, y in zip(li, ri)]
    return keep


def one_to_many(nl: int, nr: int, left: np.ndarray, right: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``(p,)`` bool: each RIGHT row's highest-weight pair (a LEFT row may take many)."""
    keep = np.zeros(len(left), dtype=bool)
    if not len(left):
        return keep
    best_r = _best(np.asarray(right, np.int64), np.asarray(weight, np.float64), np.asarray(left, np.int64), nr)
    return best_r[right] == left
