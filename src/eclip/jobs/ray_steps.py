"""The steps of ``eclip dedupe --ray`` that run as Ray tasks: the kNN self-join, one task per
block of query rows (the index opened once per task, memory-mapped), and pair scoring, one
task per block of candidate pairs. Both give the single process's numbers: each query and
each pair is computed on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eclip.distributed import RayRunner
from eclip.distributed.ray_runner import blocks_of, named_work
from eclip.index import open_index_dir
from eclip.index.search import self_join_rows
from eclip.matcher.pair_scoring import PairInputs, score_candidates

#: Query rows per Ray task of the kNN self-join, and candidate pairs per scoring task.
RAY_QUERY_ROWS = 500_000
RAY_PAIR_ROWS = 2_000_000


def _blocks(n: int, per_block: int, ray: RayRunner) -> list[tuple[int, int]]:
    """Row blocks for Ray tasks: at least one per worker, at most ``per_block`` rows each."""
    return blocks_of(n, min(per_block, max(1, -(-n // ray.workers()))))


def knn_task(j: int, lo: int, hi: int, xb: np.ndarray, folder: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One Ray task of ``dedupe --ray``'s self-join: the index opened once, memory-mapped;
    query rows ``[lo, hi)``."""
    with named_work(f"kNN block {j} (rows {lo + 1:,}-{hi:,})"):
        return self_join_rows(open_index_dir(folder, mmap=True), xb, lo, hi, k)


def self_join_on_ray(ray: RayRunner, folder: Path, xb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`eclip.index.knn_self_join` over the index directory ``folder``, one Ray task
    per block of query rows."""
    parts = ray.map_tasks(
        knn_task,
        _blocks(len(xb), RAY_QUERY_ROWS, ray),
        f"searching {k} neighbours",
        {"xb": xb, "folder": str(folder), "k": k},
    )
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def score_task(
    j: int, lo: int, hi: int, a: np.ndarray, b: np.ndarray, inputs: PairInputs
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One Ray task of ``dedupe --ray``'s scoring: candidate pairs ``[lo, hi)``."""
    with named_work(f"pairs {lo + 1:,}-{hi:,}"):
        return score_candidates(a[lo:hi], b[lo:hi], inputs)


def score_on_ray(
    ray: RayRunner, a: np.ndarray, b: np.ndarray, inputs: PairInputs
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """:func:`score_candidates`, one Ray task per block of pairs, the blocks joined in order."""
    parts = ray.map_tasks(
        score_task, _blocks(len(a), RAY_PAIR_ROWS, ray), f"scoring {len(a):,} pairs", {"a": a, "b": b, "inputs": inputs}
    )
    signals = {name: np.concatenate([p[0][name] for p in parts]) for name in parts[0][0]}
    return signals, np.concatenate([p[1] for p in parts])
