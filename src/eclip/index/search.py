"""kNN self-join: every row's nearest neighbours among all rows."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eclip.index.autotune import choose_factory
from eclip.index.store import IndexDir, build_index_dir, open_index_dir
from eclip.progress import console, progress_bar
from eclip.rundir import MANIFEST, read_json


def knn_self_join(knn: IndexDir, xb: np.ndarray, k: int, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours of every indexed row, itself excluded.

    Args:
        knn: an index directory over ``xb`` (or anything with ``search(queries, k)``).
        xb: ``(n, d)`` float32, L2-normalised; row ``i`` must be vector ``i`` of the index.
        k: neighbours per row.
        batch: queries per search call.

    Returns:
        ``(scores, ids)``, both ``(n, k)``: float32 cosine similarity, and int64 row positions
        with ``-1`` padding where fewer than ``k`` other rows exist. Sorted best first.
    """
    n = len(xb)
    with progress_bar(f"searching {k} neighbours of {n:,} rows", n) as (bar, task):
        return self_join_rows(knn, xb, 0, n, k, batch, lambda m: bar.advance(task, m))


def self_join_rows(
    knn: IndexDir,
    xb: np.ndarray,
    lo: int,
    hi: int,
    k: int,
    batch: int = 8192,
    advance: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`knn_self_join` for the query rows ``[lo, hi)`` only (one block of a
    distributed self-join): ``(scores, ids)``, both ``(hi - lo, k)``, as it returns them."""
    n = len(xb)
    scores = np.full((hi - lo, k), -np.inf, dtype=np.float32)
    ids = np.full((hi - lo, k), -1, dtype=np.int64)
    kk = min(k + 1, max(n, 1))
    for s in range(lo, hi, batch):
        D, I = knn.search(np.ascontiguousarray(xb[s : min(hi, s + batch)]), kk)
        drop = (I < 0) | (I == np.arange(s, s + len(I))[:, None])
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept entries first, in rank order
        I, D = np.take_along_axis(I, order, 1), np.take_along_axis(D, order, 1)
        gone = np.take_along_axis(drop, order, 1)
        ids[s - lo : s - lo + len(I), : I.shape[1]] = np.where(gone, -1, I)
        scores[s - lo : s - lo + len(I), : D.shape[1]] = np.where(gone, -np.inf, D)
        if advance is not None:
            advance(len(I))
    return scores, ids


#: A self-join strategy: ``(index directory, its (n, d) vectors, k) -> (scores, ids)`` as
#: :func:`knn_self_join` returns them (e.g. the same join spread over Ray tasks).
SelfJoin = Callable[[Path, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def cached_self_join(
    vectors: np.ndarray, rows: np.ndarray, key: str, k: int, flat_max: int, folder: Path, join: SelfJoin | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Top-``k`` neighbours among ``rows`` of ``vectors`` via an index directory cached in
    ``folder``, so that a rerun reuses it; it is rebuilt when it was built from other
    embeddings (``key``) or another factory.

    Args:
        vectors: ``(n, d)`` float32, L2-normalised. rows: ``(m,)`` int64 sorted row
            positions to join. key: fingerprint of the vectors and rows.
        flat_max: below this many rows the index is exact (:func:`choose_factory`).
        join: runs the self-join over the built index directory instead of
            :func:`knn_self_join` in this process.

    Returns:
        ``(scores, nn, info)``: ``(m, k)`` float32 cosines and ``(m, k)`` int64 positions
        within ``rows`` as :func:`knn_self_join` returns them, and the index's factory, size,
        nprobe, measured recall@k and GPUs.
    """
    every = len(rows) == len(vectors)  # rows is sorted and unique: all of them, in order
    sub = np.ascontiguousarray(vectors if every else vectors[rows], dtype=np.float32)  # no copy of all rows
    idx = cached_index(sub, [str(r) for r in rows], key, k, flat_max, folder)
    scores, nn = join(folder, sub, k) if join is not None else knn_self_join(idx, sub, k)
    return scores, nn, index_info(idx, k)


def index_info(idx: IndexDir, k: int) -> dict:
    """What a job's manifest records of an index: factory, size, nprobe, recall@k, GPUs."""
    return {k_: idx.manifest.get(k_) for k_ in ("factory", "n", "nprobe", f"recall@{k}", "gpus")}


def cached_index(xb: np.ndarray, ids: list[str], key: str, k: int, flat_max: int, folder: Path) -> IndexDir:
    """An index directory over ``xb`` ((n, d) float32, L2-normalised) kept in ``folder``:
    reused when it was built from the same vectors (``key``) and factory, else rebuilt.
    The factory is :func:`choose_factory`'s for ``n`` and ``flat_max`` (exact below it)."""
    factory = choose_factory(len(xb), xb.shape[1], flat_max=flat_max)
    built = read_json(folder / MANIFEST)
    trained = read_json(folder / "trained.json")
    if (built and (built.get("key"), built.get("factory")) != (key, factory)) or (
        trained and (trained.get("key"), trained.get("factory")) != (key, factory)
    ):
        console.print(f"[yellow]{folder} was built from other embeddings or settings; rebuilding it.[/]")
        shutil.rmtree(folder)
        built = {}
    if not built:
        build_index_dir(xb, ids, folder, key=key, factory=factory, k=k)
    return open_index_dir(folder)
