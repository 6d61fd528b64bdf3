"""Match groups from scored candidate pairs.

Methods:

* ``components``: keep every pair scoring >= threshold; groups are the connected components
  (single-linkage). Finds large groups but chains: A~B and B~C put A and C together.
* ``mutual``: keep a pair only when each row is the other's best-scoring candidate
  (reciprocal nearest neighbour) and it scores >= threshold; groups are its components, so
  at most pairs. Precise; the standard one-to-one assignment of entity resolution between two
  sources (e.g. "unique mapping clustering", Papadakis et al., "Entity Resolution: Past,
  Present and Yet-to-Come", EDBT 2020), and robust when one catalog repeats a product rarely.
* ``average``: average-linkage agglomeration over the sparse candidate graph
  (:mod:`eclip.matcher.linkage`): groups of any size, merged only while the average score
  over all their row pairs (non-candidates count 0) stays >= threshold, so they do not chain.
* ``auto``: ``mutual`` or ``average``, chosen per catalog by :func:`choose_method` from the
  groups average linkage makes: a catalog of pairs (two shops, each listing a product once)
  gets ``mutual``, a catalog of groups ``average``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from eclip.matcher.constraints import Constraints, constrained_edges
from eclip.matcher.linkage import average_linkage

#: Grouping methods; ``auto`` chooses mutual or average per catalog.
GroupingMethod = Literal["auto", "mutual", "average", "components"]
METHODS: tuple[str, ...] = get_args(GroupingMethod)
#: Default grouping: chosen per catalog (docs/how-matching-works.md).
DEFAULT_METHOD: GroupingMethod = "auto"
#: ``auto`` picks ``average`` when average linkage puts at least this share of its grouped
#: rows in groups of 3 or more (a catalog of groups); else ``mutual`` (a catalog of pairs).
#: Chosen leave-one-catalog-out by ``bench/transfer.py``: the dev catalogs of pairs sit at
#: 0.07-0.33, those of groups at 0.53-0.86.
AUTO_GROUP_SHARE = 0.45
#: Default threshold on the combined score, fixed on the dev catalogs before evaluation.
DEFAULT_THRESHOLD = 0.6


@dataclass(frozen=True)
class Grouping:
    """The result of grouping ``n`` rows.

    Attributes:
        labels: ``(n,)`` int64 group id per row: the smallest row position in its group.
        accepted: ``(p,)`` bool, which input pairs are edges of the groups.
        best: ``(n,)`` int64, each row's best accepted partner (row position), ``-1`` if none.
        best_score: ``(n,)`` float32, that partner's score, NaN if none.
    """

    labels: np.ndarray
    accepted: np.ndarray
    best: np.ndarray
    best_score: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        """``(n,)`` int64, the size of each row's group."""
        _, inv, counts = np.unique(self.labels, return_inverse=True, return_counts=True)
        return counts[inv]


def _best_partner(
    n: int, a: np.ndarray, b: np.ndarray, score: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's highest-scoring partner among pairs where ``mask``; ties go to the lower row."""
    best = np.full(n, -1, dtype=np.int64)
    best_score = np.full(n, np.nan, dtype=np.float32)
    src = np.concatenate([a[mask], b[mask]])
    dst = np.concatenate([b[mask], a[mask]])
    sc = np.concatenate([score[mask], score[mask]])
    if len(src) == 0:
        return best, best_score
    order = np.lexsort((dst, -sc, src))  # by row, then score desc, then partner asc
    first = np.ones(len(order), dtype=bool)
    first[1:] = src[order][1:] != src[order][:-1]
    sel = order[first]
    best[src[sel]] = dst[sel]
    best_score[src[sel]] = sc[sel]
    return best, best_score


def component_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n,)`` int64 connected-component labels of the undirected edges ``(a, b)``; each
    component is labelled by its smallest row position."""
    graph = sp.coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    # label each component by its smallest row position
    first = np.full(comp.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n, dtype=np.int64))
    return first[comp]


def expected_matches(n: int, a: np.ndarray, b: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """``(n,)`` float64 expected number of matches of each row: the sum of its candidate
    pairs' match probabilities."""
    p = np.nan_to_num(np.asarray(probability, dtype=np.float64))
    return np.bincount(a, p, n) + np.bincount(b, p, n)


def match_rate(
    n: int,
    group_id: np.ndarray,
    expected_per_row: float | None,
    method: str,
    a: np.ndarray,
    b: np.ndarray,
    probability: np.ndarray,
) -> tuple[dict[str, float | None], str | None]:
    """Matches per row the match model expects beside those the groups imply (each row is
    matched to every other row of its group), and a warning when they disagree by more than
    a factor of 2 (and 0.1 per row): the groups then say something the model does not
    believe.

    The model expects :func:`expected_matches` matches of each row; under ``mutual`` a row has
    one match at most, so there a row expects ``min(1, that)`` (both are in the figures).

    Args:
        n: rows. group_id: ``(n,)`` group of each row.
        expected_per_row: the mean of :func:`expected_matches` as the match model recorded
            it, or ``None`` when no model was fitted (then nothing is compared).
        method: the grouping method used. a, b, probability: ``(p,)`` candidate pairs and
            their match probabilities (NaN counts 0).

    Returns:
        ``({"expected_matches_per_row", "expected_matches_per_row_one_to_one",
        "predicted_matches_per_row"}, the warning or None)``.
    """
    _, counts = np.unique(group_id, return_counts=True)
    predicted = float((counts * (counts - 1)).sum() / max(n, 1))
    one_to_one = float(np.minimum(expected_matches(n, a, b, probability), 1.0).mean()) if n else 0.0
    rate = {
        "expected_matches_per_row": expected_per_row,
        "expected_matches_per_row_one_to_one": round(one_to_one, 4) if expected_per_row is not None else None,
        "predicted_matches_per_row": round(predicted, 4),
    }
    expected = rate["expected_matches_per_row_one_to_one" if method == "mutual" else "expected_matches_per_row"]
    if expected is None or abs(predicted - expected) <= 0.1 or expected / 2 <= predicted <= 2 * expected:
        return rate, None
    return rate, f"the groups imply {predicted:.2f} matches per row, the match model expects {expected:.2f}: " + (
        "groups hold rows the model does not believe match (chaining?); raise --threshold or try --method mutual."
        if predicted > expected
        else "the grouping keeps fewer matches than the model expects; try --method average or review (eclip report)."
    )


def choose_method(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    threshold: float,
    group_share: float = AUTO_GROUP_SHARE,
) -> tuple[str, float]:
    """``auto``'s choice for a catalog, from the groups average linkage makes.

    A catalog where a row has one duplicate at most (two shops' listings, each listing a
    product once) wants ``mutual``; one where a product has many offers wants ``average``.
    Average linkage at the threshold tells them apart by what it builds: in a catalog of
    pairs most of its groups are pairs (a third row joins only by mistake), in a catalog of
    groups most grouped rows are in groups of 3 or more. The rule reads the groups, not the
    score distribution, so a catalog whose candidates are mostly near-twins cannot push it
    to ``average`` by itself. A catalog with no group at all gets ``mutual``.

    Args:
        n, a, b, score: rows and ``(p,)`` scored candidate pairs (any scale; NaN never
            links).
        threshold: the threshold the catalog will be grouped at, on ``score``'s scale.
        group_share: pick ``average`` at or above this share (:data:`AUTO_GROUP_SHARE`).

    Returns:
        ``(method, share of grouped rows in groups of 3 or more)``.
    """
    method, share, _ = auto_choice(n, a, b, score, threshold, group_share)
    return method, share


def auto_choice(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    threshold: float,
    group_share: float = AUTO_GROUP_SHARE,
) -> tuple[str, float, np.ndarray]:
    """:func:`choose_method`, with the ``(n,)`` int64 group labels average linkage made to
    decide, so that :func:`group` need not make them again when it picks ``average``."""
    s = np.nan_to_num(np.asarray(score, np.float32), nan=-np.inf)
    labels = average_linkage(n, np.asarray(a, np.int64), np.asarray(b, np.int64), s, threshold)
    _, counts = np.unique(labels, return_counts=True)
    grouped = counts[counts > 1]
    share = float(grouped[grouped >= 3].sum() / grouped.sum()) if grouped.sum() else 0.0
    return ("average" if share >= group_share else "mutual"), share, labels


def group(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    threshold: float,
    method: str = "mutual",
    constraints: Constraints | None = None,
    average_labels: np.ndarray | None = None,
) -> Grouping:
    """Group ``n`` rows from scored pairs.

    Args:
        n: number of rows; rows in no pair become singletons.
        a, b: ``(p,)`` int64 row positions of the candidate pairs (each pair once).
        score: ``(p,)`` float32 pair scores; higher is more similar. For ``auto`` they must
            be match probabilities.
        threshold: pairs scoring below it are never edges (``average``: groups merge while
            their average pair score is >= it).
        method: one of :data:`METHODS`.
        constraints: reviewer must-link / cannot-link pairs (:mod:`eclip.matcher.constraints`),
            applied to the accepted edges.
        average_labels: ``(n,)`` the groups average linkage already made on these pairs,
            scores and threshold (:func:`auto_choice`); ``average`` uses them instead of
            running again, unless cannot-links must be obeyed.

    Returns:
        The grouping. For ``average``, ``accepted`` marks every candidate pair inside a group.

    Raises:
        ValueError: unknown ``method``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown grouping method {method!r}; choose one of {', '.join(METHODS)}")
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    score = np.asarray(score, dtype=np.float32)
    if method == "auto":
        method, _ = choose_method(n, a, b, score, threshold)
    constrained = constraints is not None and len(constraints) > 0
    if method == "average":
        cannot = (
            set(zip(constraints.cannot_a.tolist(), constraints.cannot_b.tolist()))
            if constraints is not None and constrained
            else None
        )
        if average_labels is not None and not cannot:  # made on the same pairs, nothing to keep apart
            labels = np.asarray(average_labels, dtype=np.int64)
        else:
            labels = average_linkage(n, a, b, score, threshold, cannot=cannot)
        accepted = labels[a] == labels[b]  # the groups are the components of these edges
    elif method == "components":
        accepted = score >= threshold
    else:
        best, _ = _best_partner(n, a, b, score, np.ones(len(a), dtype=bool))
        accepted = (score >= threshold) & (best[a] == b) & (best[b] == a)
    if constraints is not None and constrained:
        accepted, must = constrained_edges(n, a, b, score, accepted, constraints)
        labels = component_labels(
            n,
            np.concatenate([a[accepted], constraints.must_a[must]]),
            np.concatenate([b[accepted], constraints.must_b[must]]),
        )
    elif method != "average":
        labels = component_labels(n, a[accepted], b[accepted])
    best, best_score = _best_partner(n, a, b, score, accepted)
    return Grouping(labels=labels, accepted=accepted, best=best, best_score=best_score)
