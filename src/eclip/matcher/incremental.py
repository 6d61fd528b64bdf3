"""Incremental matching: new listings against an index of listings already grouped.

Existing match groups are frozen: their ids never change and two existing groups are never
merged (a new listing that matches several is put in its best one and the others are
reported as ``also_matches`` for review). New listings are first grouped among themselves
(:func:`eclip.matcher.group`, same method and threshold as ``dedupe``); each new group then
joins the existing group of its best-scoring indexed match at or above the threshold, or
gets a new id after the largest existing one. This is the "incremental record linkage" setting
of Gruenheid, Dong and Srivastava, "Incremental Record Linkage", VLDB 2014, restricted to
not revising past decisions, which is what keeps ids stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eclip.matcher.grouping import Grouping, group


@dataclass(frozen=True)
class IncrementalGroups:
    """Assignment of ``n`` new rows.

    Attributes:
        group_id: ``(n,)`` int64: an existing group id, or a new one (> every existing id).
        joined: ``(n,)`` bool, the row's group existed before.
        best_old: ``(n,)`` int64 index row of the row's best match in the index at or above
            the threshold, ``-1`` if none. best_old_score: its score, NaN if none.
        also_matches: per row, other existing group ids its group matched (not merged).
        within: the grouping among new rows.
    """

    group_id: np.ndarray
    joined: np.ndarray
    best_old: np.ndarray
    best_old_score: np.ndarray
    also_matches: list[list[int]]
    within: Grouping


def assign_incremental(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    new_rows: np.ndarray,
    old_rows: np.ndarray,
    old_score: np.ndarray,
    old_groups: np.ndarray,
    threshold: float,
    method: str,
) -> IncrementalGroups:
    """Group ``n`` new rows and attach them to existing groups.

    Args:
        n: new rows.
        a, b, score: ``(p,)`` candidate pairs among new rows (positions) and their scores.
        new_rows, old_rows, old_score: ``(q,)`` candidate pairs (new row position, index row)
            and their scores.
        old_groups: ``(N,)`` int64 existing group id of every index row.
        threshold: minimum score of a match; method: ``mutual`` or ``components``.
    """
    within = group(n, a, b, score, threshold, method)
    best_old = np.full(n, -1, dtype=np.int64)
    best_score = np.full(n, np.nan, dtype=np.float32)
    ok = old_score >= threshold
    order = np.lexsort((old_rows[ok], -old_score[ok]))
    hit_groups: dict[int, set[int]] = {}
    for r, o, s in zip(new_rows[ok][order], old_rows[ok][order], old_score[ok][order]):
        if best_old[r] < 0:
            best_old[r], best_score[r] = o, s
        hit_groups.setdefault(int(r), set()).add(int(old_groups[o]))
    next_id = int(old_groups.max()) + 1 if len(old_groups) else 0
    group_id = np.full(n, -1, dtype=np.int64)
    joined = np.zeros(n, dtype=bool)
    also: list[list[int]] = [[] for _ in range(n)]
    _, label = np.unique(within.labels, return_inverse=True)
    members: dict[int, list[int]] = {}
    for r in range(n):  # groups in order of their first row
        members.setdefault(int(label[r]), []).append(r)
    for rows in members.values():
        hits = [r for r in rows if best_old[r] >= 0]
        if hits:
            top = max(hits, key=lambda r: (best_score[r], -best_old[r]))
            gid = int(old_groups[best_old[top]])
            others = sorted(set().union(*(hit_groups[r] for r in hits)) - {gid})
            group_id[rows], joined[rows] = gid, True
            for r in rows:
                also[r] = others
        else:
            group_id[rows] = next_id
            next_id += 1
    return IncrementalGroups(group_id, joined, best_old, best_score, also, within)
