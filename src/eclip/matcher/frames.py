"""The tables a matcher writes: one row per catalog row with its match group."""

from __future__ import annotations

import numpy as np
import polars as pl

from eclip.matcher.grouping import Grouping
from eclip.matcher.incremental import IncrementalGroups

GROUPS_SCHEMA = {
    "id": pl.String,
    "group_id": pl.Int64,
    "group_size": pl.Int64,
    "matched_to": pl.String,
    "score": pl.Float32,
    "status": pl.String,
}


def groups_frame(ids: list[str], g: Grouping, usable: np.ndarray) -> pl.DataFrame:
    """``groups.parquet`` of a dedupe run: every row once, groups numbered from 0 in the order
    of their first row.

    Args:
        ids: the ``n`` catalog ids, in row order.
        g: the grouping of those ``n`` rows.
        usable: ``(n,)`` bool, rows that had something to match on (others get status
            ``empty_text``).

    Returns:
        Columns id, group_id, group_size, matched_to (the best accepted partner's id),
        score (float32, NaN without a partner), status (``matched`` / ``singleton`` /
        ``empty_text``).
    """
    n = len(ids)
    _, group_id = np.unique(g.labels, return_inverse=True)
    # number groups in order of their first row
    first_row = np.full(group_id.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(first_row, group_id, np.arange(n))
    renumber = np.empty_like(first_row)
    renumber[np.argsort(first_row, kind="stable")] = np.arange(len(first_row))
    gid = renumber[group_id] if n else group_id
    id_arr = np.array(ids, dtype=object)
    has = g.best >= 0
    matched_to = np.where(has, id_arr[np.where(has, g.best, 0)] if n else id_arr, np.array(None, dtype=object))
    sizes = g.sizes
    status = np.where(~usable, "empty_text", np.where(sizes > 1, "matched", "singleton"))
    return pl.DataFrame(
        {
            "id": list(ids),
            "group_id": gid.astype(np.int64),
            "group_size": sizes.astype(np.int64),
            "matched_to": matched_to.tolist(),
            "score": g.best_score,
            "status": status.tolist(),
        },
        schema=GROUPS_SCHEMA,
    )


def incremental_groups_frame(
    ids: list[str],
    indexed: np.ndarray,
    indexed_group: np.ndarray,
    usable: np.ndarray,
    inc: IncrementalGroups,
    old_ids: list[str],
) -> pl.DataFrame:
    """``groups.parquet`` of ``dedupe --against``: every new row once.

    Args:
        ids: the ``n`` catalog ids, in row order.
        indexed: ``(n,)`` bool, rows whose id the index already holds (they keep their group).
        indexed_group: ``(indexed.sum(),)`` int64, those rows' existing group ids.
        usable: ``(n,)`` bool, rows with a vector of the index's modality.
        inc: the assignment of the other rows, in row order
            (:func:`eclip.matcher.incremental.assign_incremental`).
        old_ids: the index's ids (``inc.partner_old`` points into them).

    Returns:
        Columns id, group_id, status (``already_indexed`` / ``joined`` / ``new_group`` /
        ``singleton`` / ``unmatchable``), matched_to, score (float32), also_matches.
    """
    n = len(ids)
    id_arr = np.array(ids, dtype=object)
    old_arr = np.array(old_ids, dtype=object)
    fresh = np.flatnonzero(~indexed)
    group_id = np.zeros(n, dtype=np.int64)
    group_id[indexed] = indexed_group
    group_id[fresh] = inc.group_id
    status = np.full(n, "already_indexed", dtype=object)
    status[fresh] = np.where(
        inc.joined,
        "joined",
        np.where(inc.new_sizes > 1, "new_group", np.where(usable[fresh], "singleton", "unmatchable")),
    )
    matched_to = np.full(n, None, dtype=object)
    score = np.full(n, np.nan, dtype=np.float32)
    own = inc.partner_old >= 0
    matched_to[fresh[own]] = old_arr[inc.partner_old[own]]
    peer = ~own & (inc.partner_new >= 0)
    matched_to[fresh[peer]] = id_arr[fresh[inc.partner_new[peer]]]
    score[fresh] = inc.score
    also: list[list[int]] = [[] for _ in range(n)]
    for j, r in enumerate(fresh):
        also[r] = inc.also_matches[j]
    return pl.DataFrame(
        {
            "id": list(ids),
            "group_id": group_id,
            "status": status.tolist(),
            "matched_to": matched_to.tolist(),
            "score": score,
            "also_matches": also,
        },
        schema={
            "id": pl.String,
            "group_id": pl.Int64,
            "status": pl.String,
            "matched_to": pl.String,
            "score": pl.Float32,
            "also_matches": pl.List(pl.Int64),
        },
    )


def cohesion_summary(group_id: np.ndarray, a: np.ndarray, b: np.ndarray, score: np.ndarray, largest: int = 5) -> dict:
    """Group-size and cohesion figures for the manifest.

    Args:
        group_id: ``(n,)`` int64 group per row (as in ``groups.parquet``).
        a, b, score: ``(p,)`` candidate pairs and the scores grouping ran on (probabilities
            for learned settings).
        largest: how many of the largest groups to describe.

    Returns:
        ``sizes`` (counts of groups by size bucket), and for the ``largest`` groups: size,
        ``density`` (share of their row pairs that are candidates), ``mean_link`` and
        ``weakest_link`` (mean and minimum score of those candidate pairs). A group whose
        weakest link sits far below its mean, or whose density is low, was held together by
        few pairs: the place to look first.
    """
    counts = np.bincount(group_id) if len(group_id) else np.zeros(0, np.int64)
    sizes = counts[counts > 0]
    buckets = {
        "1": int((sizes == 1).sum()),
        "2": int((sizes == 2).sum()),
        "3-5": int(((sizes >= 3) & (sizes <= 5)).sum()),
        "6-20": int(((sizes >= 6) & (sizes <= 20)).sum()),
        "21-100": int(((sizes >= 21) & (sizes <= 100)).sum()),
        ">100": int((sizes > 100).sum()),
    }
    inside = group_id[a] == group_id[b]
    frame = (
        pl.DataFrame({"g": group_id[a[inside]], "s": np.asarray(score, np.float64)[inside]})
        .group_by("g")
        .agg(pl.len().alias("edges"), pl.col("s").mean().alias("mean"), pl.col("s").min().alias("min"))
    )
    size_of = pl.DataFrame({"g": np.arange(len(counts)), "size": counts})
    top = frame.join(size_of, on="g").sort(["size", "g"], descending=[True, False]).head(largest)
    return {
        "groups_by_size": buckets,
        "largest_groups": [
            {
                "group_id": int(r["g"]),
                "size": int(r["size"]),
                "density": round(r["edges"] / (r["size"] * (r["size"] - 1) / 2), 4),
                "mean_link": round(float(r["mean"]), 4),
                "weakest_link": round(float(r["min"]), 4),
            }
            for r in top.iter_rows(named=True)
        ],
    }


def size_bound(n: int) -> int:
    """The group size above which a dedupe run warns: 100 rows or 1 % of the catalog."""
    return max(100, -(-n // 100))


def oversized_groups(
    group_id: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    bound: int,
    accepted: np.ndarray | None = None,
    links: int = 3,
) -> list[dict]:
    """Groups larger than ``bound`` rows, largest first, each with its ``links`` weakest
    edges (the likely places where look-alikes chained products).

    Args:
        group_id: ``(n,)`` int64 group per row. a, b, score: ``(p,)`` candidate pairs and
            the scores grouping ran on. accepted: ``(p,)`` bool edges of the groups
            (default: every candidate pair inside a group).

    Returns:
        ``[{"group_id", "size", "implied_pairs", "weakest": [(row_a, row_b, score), ...]}]``.
    """
    sizes = np.bincount(group_id) if len(group_id) else np.zeros(0, np.int64)
    big = np.flatnonzero(sizes > bound)
    out = []
    for g in big[np.argsort(-sizes[big], kind="stable")]:
        inside = np.flatnonzero((group_id[a] == g) & (group_id[b] == g) & (True if accepted is None else accepted))
        order = inside[np.argsort(np.asarray(score, np.float64)[inside], kind="stable")][:links]
        out.append(
            {
                "group_id": int(g),
                "size": int(sizes[g]),
                "implied_pairs": int(sizes[g]) * (int(sizes[g]) - 1) // 2,
                "weakest": [(int(a[e]), int(b[e]), round(float(score[e]), 4)) for e in order],
            }
        )
    return out
