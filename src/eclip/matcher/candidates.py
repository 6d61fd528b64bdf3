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
    a = np.repeat(src, k)
    b = np.asarray(ids, dtype=np.int64).reshape(-1)
    rank = np.tile(np.arange(1, k + 1, dtype=np.uint32), n)
    keep = (b >= 0) & (b != a)  # a row listed as its own neighbour is no pair
    a, b, rank = a[keep], b[keep], rank[keep]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return pl.DataFrame({"a": lo, "b": hi, "rank": rank}).group_by("a", "b").agg(pl.col("rank").min()).sort("a", "b")


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
    rows = [(i, c) for i, cs in enumerate(codes) for c in cs]
    if not rows:
        return pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Int64, "b": pl.Int64})
    df = pl.DataFrame(rows, schema={"row": pl.Int64, "code": pl.String}, orient="row")
    blocks = (
        df.group_by("code").agg(pl.col("row").unique().sort()).filter(pl.col("row").list.len().is_between(2, max_block))
    )
    a_parts, b_parts = [], []
    for members in blocks.get_column("row").to_list():
        m = np.asarray(members, dtype=np.int64)
        ia, ib = np.triu_indices(len(m), 1)
        a_parts.append(m[ia])
        b_parts.append(m[ib])
    if not a_parts:
        return pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Int64, "b": pl.Int64})
    return pl.DataFrame({"a": np.concatenate(a_parts), "b": np.concatenate(b_parts)}).unique().sort("a", "b")


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
    parts = [
        df.select(
            pl.col("a").cast(pl.Int64),
            pl.col("b").cast(pl.Int64),
            (pl.col("rank").cast(pl.UInt32) if "rank" in df.columns else pl.lit(None, pl.UInt32)).alias("rank"),
            pl.lit(name).alias("source"),
        )
        for name, df in lists.items()
    ]
    if not parts:
        return pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64, "rank": pl.UInt32, "source": pl.String})
    return (
        pl.concat(parts)
        .group_by("a", "b")
        .agg(pl.col("rank").min(), pl.col("source").unique().sort().str.join("+"))
        .sort("a", "b")
    )
