"""Incremental matching: new listings against an index of listings already grouped.

Existing match groups are frozen: their ids never change and two existing groups are never
merged (a new listing that matches several is put in its best one and the others are
reported as ``also_matches`` for review). New listings are first grouped among themselves
together with their candidate index rows (:func:`eclip.matcher.group`, same method and
threshold as ``dedupe``); each resulting group of new rows joins the existing group of its
best accepted indexed match, or gets a new id after the largest existing one. This is the "incremental record linkage" setting
of Gruenheid, Dong and Srivastava, "Incremental Record Linkage", VLDB 2014, restricted to
not revising past decisions, which is what keeps ids stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eclip.matcher.grouping import group


@dataclass(frozen=True)
class IncrementalGroups:
    """Assignment of ``n`` new rows.

    Attributes:
        group_id: ``(n,)`` int64: an existing group id, or a new one (> every existing id).
        joined: ``(n,)`` bool, the row's group existed before.
        partner_old: ``(n,)`` int64 index row of the row's accepted match in the index, or -1.
        partner_new: ``(n,)`` int64 new-row position of the row's best accepted match, or -1
            when that match is an index row or there is none. score: ``(n,)`` float32 score of
            the index match, else of the new-row match, NaN if none.
        new_sizes: ``(n,)`` int64 how many new rows share the row's group.
        also_matches: per row, other existing group ids its group matched (not merged).
    """

    group_id: np.ndarray
    joined: np.ndarray
    partner_old: np.ndarray
    partner_new: np.ndarray
    score: np.ndarray
    new_sizes: np.ndarray
    also_matches: list[list[int]]


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

    The new rows and their candidate index rows form one graph, grouped with ``method``
    (:func:`eclip.matcher.group`). With ``mutual`` only index rows still alone in their group
    take part, as in a batch run where a matched pair is final. A component holding index rows
    of several existing groups joins the one of its best new-to-index edge; the others are
    reported in ``also_matches``.

    Args:
        n: new rows.
        a, b, score: ``(p,)`` candidate pairs among new rows (positions) and their scores.
        new_rows, old_rows, old_score: ``(q,)`` candidate pairs (new row position, index row)
            and their scores.
        old_groups: ``(N,)`` int64 existing group id of every index row.
        threshold: minimum score of a match; method: ``mutual`` or ``components``.
    """
    ok = old_score >= threshold
    hit_groups: dict[int, set[int]] = {}
    for r, o in zip(new_rows[ok], old_rows[ok]):
        hit_groups.setdefault(int(r), set()).add(int(old_groups[o]))
    avail = np.ones(len(old_rows), dtype=bool)
    if method == "mutual":
        _, inv, counts = np.unique(old_groups, return_inverse=True, return_counts=True)
        avail = counts[inv][old_rows] == 1
    u_old, pos = np.unique(old_rows[avail], return_inverse=True)
    g = group(
        n + len(u_old),
        np.concatenate([a, new_rows[avail]]).astype(np.int64),
        np.concatenate([b, n + pos]).astype(np.int64),
        np.concatenate([score, old_score[avail]]).astype(np.float32),
        threshold,
        method,
    )
    # the best accepted new->index edge of each component decides its existing group
    edges_new, edges_old = np.concatenate([a, new_rows[avail]]), np.concatenate([b, n + pos])
    edge_score = np.concatenate([score, old_score[avail]])
    cross = g.accepted & (edges_old >= n)
    best_edge: dict[int, tuple[float, int, int]] = {}
    partner_old = np.full(n, -1, dtype=np.int64)
    partner_score = np.full(n, np.nan, dtype=np.float32)
    for r, o, s_ in zip(edges_new[cross], edges_old[cross], edge_score[cross]):
        o_row = int(u_old[o - n])
        if partner_old[r] < 0 or s_ > partner_score[r]:
            partner_old[r], partner_score[r] = o_row, s_
        lab = int(g.labels[r])
        if lab not in best_edge or (s_, -o_row) > best_edge[lab][:2]:
            best_edge[lab] = (float(s_), -o_row, o_row)
    labels = g.labels[:n]
    next_id = int(old_groups.max()) + 1 if len(old_groups) else 0
    group_id = np.full(n, -1, dtype=np.int64)
    joined = np.zeros(n, dtype=bool)
    also: list[list[int]] = [[] for _ in range(n)]
    members: dict[int, list[int]] = {}
    for r in range(n):  # components in order of their first new row
        members.setdefault(int(labels[r]), []).append(r)
    for lab, rows in members.items():
        if lab in best_edge:
            gid = int(old_groups[best_edge[lab][2]])
            group_id[rows], joined[rows] = gid, True
        else:
            gid = next_id
            group_id[rows] = gid
            next_id += 1
        others = sorted(set().union(*(hit_groups.get(r, set()) for r in rows)) - {gid})
        for r in rows:
            also[r] = others
    partner_new = np.where(g.best[:n] < n, g.best[:n], -1)  # -1 stays -1; index nodes (>= n) become -1
    score_out = np.where(partner_old >= 0, partner_score, np.where(partner_new >= 0, g.best_score[:n], np.nan)).astype(
        np.float32
    )
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return IncrementalGroups(group_id, joined, partner_old, partner_new, score_out, counts[inv].astype(np.int64), also)
