"""Candidate pairs (blocking): the kNN self-join, plus rows that share a rare model code."""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp


def knn_pairs(ids: np.ndarray, query: np.ndarray | None = None) -> pl.DataFrame:
    """Undirected pairs from a kNN table.

    Args:
        ids: ``(n, k)`` int64 neighbour row positions, best first, ``-1`` for none (a row
            listing itself is skipped).
        query: ``(n,)`` int64 row position whose neighbours each line of ``ids`` holds
            (default ``arange(n)``: line ``i`` is row ``i``), for tables over a subset of
            rows whose ids are catalog positions (:func:`eclip.index.sparse_knn.tfidf_knn_table`).

    Returns:
        Columns ``a`` < ``b`` (int64 row positions) and ``rank`` (uint32): the best 1-based rank
        at which either row lists the other. One row per pair, sorted by ``(a, b)``.
    """
    n, k = ids.shape
    src = np.arange(n, dtype=np.int64) if query is None else np.asarray(query, dtype=np.int64)
    b = np.asarray(ids, dtype=np.int64).reshape(-1)
    a = np.repeat(src, k)
    keep = (b >= 0) & (b != a)  # a row listed as its own neighbour is no pair
    rank = np.tile(np.arange(1, k + 1, dtype=np.uint32), n)[keep]
    a, b = a[keep], b[keep]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    del a, b
    lo, hi, first = unique_pairs(lo, hi, rank)
    return pl.DataFrame({"a": lo, "b": hi, "rank": rank[first]})


def unique_pairs(
    a: np.ndarray, b: np.ndarray, rank: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pair ``(a, b)`` once, sorted by ``(a, b)``: one int64 key per pair, a stable
    sort, the first of each run (numpy: at 10M pairs a few hundred MB, where a polars
    group-by on two columns held several GiB).

    Args:
        a, b: ``(p,)`` int64 non-negative row positions. rank: ``(p,)`` when given, the
            entry kept for a repeated pair is one of lowest rank.

    Returns:
        ``(a, b, first)``: the unique pairs and, per unique pair, the index (into the inputs)
        of the entry kept.
    """
    if not len(a):
        return a.astype(np.int64), b.astype(np.int64), np.zeros(0, np.int64)
    order, starts = _pair_runs(a, b, rank)
    first = order[starts]
    return a[first].astype(np.int64), b[first].astype(np.int64), first


def _pair_runs(a: np.ndarray, b: np.ndarray, rank: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(order, starts)``: the pairs sorted by ``(a, b)`` (then ``rank``, else stably) as one
    int64 key each, and the positions in ``order`` where each distinct pair's run begins.
    ``a``, ``b``: ``(p,)`` non-negative, ``p > 0``."""
    width = np.int64(max(int(a.max()), int(b.max())) + 1)
    key = a.astype(np.int64) * width + b
    order = np.lexsort((rank, key)) if rank is not None else np.argsort(key, kind="stable")
    key = key[order]
    return order, np.flatnonzero(np.r_[True, key[1:] != key[:-1]])


def tfidf_knn(
    x: sp.csr_matrix,
    rows: np.ndarray,
    k: int,
    min_cosine: float = 0.0,
    block: int = 16384,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs from each row's ``k`` nearest rows among ``rows`` by character n-gram
    TF-IDF cosine: :func:`eclip.index.sparse_knn.tfidf_knn_table` (see it for the arguments
    and the ``TypeError`` / ``ValueError`` it raises), then :func:`knn_pairs`.

    Returns:
        ``(a, b, rank)``, each ``(p,)`` int64: catalog row positions ``a < b``, each unordered
        pair once, sorted by ``(a, b)``, and ``rank``, the lower of the 1-based ranks (self
        excluded) at which either row found the other. Empty when ``rows`` has fewer than two.
    """
    from eclip.index.sparse_knn import tfidf_knn_table

    _, ids = tfidf_knn_table(x, rows, k, min_cosine, block, n_threads)
    pairs = knn_pairs(ids, np.asarray(rows, dtype=np.int64))
    return tuple(pairs[c].to_numpy().astype(np.int64) for c in ("a", "b", "rank"))  # type: ignore[return-value]


def code_block_pairs(codes: list[frozenset[str]], max_block: int = 20) -> pl.DataFrame:
    """Pairs of rows that share a model code held by at most ``max_block`` rows.

    A code shared by many rows (``128gb``) says little and would make quadratic blocks, so
    blocks larger than ``max_block`` are skipped.

    Args:
        codes: per row, its codes (see :func:`eclip.encoders.extract_codes`).

    Returns:
        Columns ``a`` < ``b`` (int64 row positions), unique.
    """
    empty = pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Int64, "b": pl.Int64})
    per_row = pl.DataFrame({"row": np.arange(len(codes), dtype=np.int64), "code": [sorted(c) for c in codes]})
    blocks = (
        per_row.explode("code")
        .drop_nulls("code")
        .group_by("code")
        .agg(pl.col("row").unique().sort())
        .filter(pl.col("row").list.len().is_between(2, max_block))
        .with_columns(pl.col("row").list.len().alias("size"))
    )
    a_parts, b_parts = [], []
    for (size,), same in blocks.group_by("size"):  # blocks of one size: one (blocks, size) matrix
        m = np.asarray(same.get_column("row").to_list(), dtype=np.int64).reshape(-1, int(size))
        ia, ib = np.triu_indices(int(size), 1)
        a_parts.append(m[:, ia].ravel())
        b_parts.append(m[:, ib].ravel())
    if not a_parts:
        return empty
    a, b, _ = unique_pairs(np.concatenate(a_parts), np.concatenate(b_parts))
    return pl.DataFrame({"a": a, "b": b})


def merge_candidates(knn: pl.DataFrame, blocked: pl.DataFrame) -> pl.DataFrame:
    """Union of kNN pairs and code-block pairs.

    Returns columns ``a``, ``b``, ``rank`` (null for pairs found only by code blocking) and
    ``source`` (``"knn"``, ``"code"`` or ``"knn+code"``).
    """
    both = knn.join(blocked.with_columns(pl.lit(True).alias("_code")), on=["a", "b"], how="full", coalesce=True)
    return (
        both.with_columns(
            pl.when(pl.col("rank").is_null())
            .then(pl.lit("code"))
            .when(pl.col("_code"))
            .then(pl.lit("knn+code"))
            .otherwise(pl.lit("knn"))
            .alias("source")
        )
        .drop("_code")
        .sort("a", "b")
    )


def union_candidates(lists: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Union of several candidate lists, one per signal (text kNN, code blocks, image kNN, ...).

    Args:
        lists: signal name -> frame with columns ``a`` < ``b`` and optionally ``rank``.

    Returns:
        Columns ``a``, ``b``, ``rank`` (best rank over the lists that rank, null if none does)
        and ``source`` (the names of the lists holding the pair, sorted, joined by ``+``).
    """
    if not lists:
        return pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64, "rank": pl.UInt32, "source": pl.String})
    names = list(lists)
    none = np.iinfo(np.uint32).max  # no rank: sorts after every rank
    a = np.concatenate([df.get_column("a").to_numpy().astype(np.int64) for df in lists.values()])
    b = np.concatenate([df.get_column("b").to_numpy().astype(np.int64) for df in lists.values()])
    rank = np.concatenate(
        [
            df.get_column("rank").fill_null(none).to_numpy().astype(np.uint32)
            if "rank" in df.columns
            else np.full(len(df), none, np.uint32)
            for df in lists.values()
        ]
    )
    bit = np.concatenate([np.full(len(df), 1 << i, np.uint16) for i, df in enumerate(lists.values())])
    if not len(a):
        return union_candidates({})
    order, starts = _pair_runs(a, b, rank)
    first = order[starts]
    bits = np.bitwise_or.reduceat(bit[order], starts)
    labels = {m: "+".join(sorted(n for i, n in enumerate(names) if m & (1 << i))) for m in np.unique(bits).tolist()}
    best = rank[first]
    return pl.DataFrame(
        {
            "a": a[first],
            "b": b[first],
            "rank": pl.Series(best, dtype=pl.UInt32).set(pl.Series(best == none), None),
            "source": pl.Series(bits).replace_strict(labels, return_dtype=pl.String),
        }
    )
