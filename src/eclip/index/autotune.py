"""Choosing an index: the faiss factory string from n, d and a memory budget, and nprobe from
a recall target.

* fewer than ``flat_max`` rows (and the float32 vectors fit the budget): ``Flat`` (exact);
* otherwise ``IVF{nlist},PQ{m}x8`` with ``nlist ~ 4 sqrt(n)`` (a power of two), ``m = d/8``
  (a divisor of d), optionally preceded by an ``OPQ{m}_{d}`` rotation, and followed by a
  re-ranking store chosen by the budget: ``Refine(SQ8)`` (d bytes per vector: recall close to
  exact re-ranking at a quarter of the float32 size) or none.

The IVF-PQ stage proposes ``k * k_factor`` candidates, which the refine stage re-scores
(Jégou et al., "Searching in one billion vectors: re-rank with source coding", ICASSP 2011).
nprobe is raised until recall@k against exact search on held-out queries reaches the target.
References: FAISS wiki, "Guidelines to choose an index" and "The index factory"; autofaiss's
``get_optimal_index_keys_v2``.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from eclip.errors import RunDirError

FLAT_MAX = 200_000
#: Least recall@k a doubling of nprobe must add for tuning to go on (see :func:`tune_nprobe`).
PLATEAU_GAIN = 0.005
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def pick_nlist(n: int) -> int:
    """IVF cells for ``n`` vectors: ``4 sqrt(n)`` rounded to a power of two, in [16, 65536]."""
    return int(max(16, min(65536, 2 ** round(math.log2(4 * math.sqrt(max(n, 1)))))))


def pick_m(d: int) -> int:
    """PQ sub-quantizers for dimension ``d``: ``d / 8`` rounded down to a divisor of ``d``."""
    m = max(1, d // 8)
    while d % m:
        m -= 1
    return m


def choose_factory(n: int, d: int, max_memory: int | None = None, flat_max: int = FLAT_MAX, opq: bool = False) -> str:
    """The faiss factory string for ``n`` vectors of dimension ``d`` within ``max_memory`` bytes.

    Raises:
        RunDirError: not even IVF-PQ codes fit the budget.
    """
    if n < flat_max and (max_memory is None or 4 * d * n <= max_memory):
        return "Flat"
    nlist, m = pick_nlist(n), pick_m(d)
    base = f"{f'OPQ{m}_{d},' if opq else ''}IVF{nlist},PQ{m}x8"
    per_vector = m + 8  # PQ code + the id stored in the inverted list
    for refine, extra in (("Refine(SQ8)", d), ("", 0)):
        if max_memory is None or (per_vector + extra) * n + 4 * d * nlist <= max_memory:
            return f"{base},{refine}" if refine else base
    raise RunDirError(
        f"{n:,} vectors of dimension {d} do not fit in {max_memory:,} bytes even as {m}-byte PQ codes; raise --max-memory."
    )


def training_size(nlist: int | None, n: int) -> int:
    """Vectors sampled to train: at least ``39 * nlist`` (the FAISS minimum per centroid) and
    10,000 (for the 256-centroid PQ codebooks), at most ``256 * nlist`` and ``n``."""
    nlist = nlist or 256
    return int(min(n, max(39 * nlist, 10_000), 256 * nlist))


def exact_topk(xb: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """``(q, k)`` int64 row positions of the exact inner-product top-k of ``queries`` in ``xb``."""
    # faiss.knn reads xb in place (an IndexFlatIP would hold a copy of it)
    xb = np.ascontiguousarray(xb, dtype=np.float32)
    return faiss.knn(np.ascontiguousarray(queries, dtype=np.float32), xb, k, metric=faiss.METRIC_INNER_PRODUCT)[1]


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """recall@k: mean share of each exact top-k row's ids present in the approximate row.

    Both ``(q, k)`` int64; ``-1`` entries of ``exact_ids`` are ignored.
    """
    hits = total = 0
    for a, e in zip(approx_ids, exact_ids):
        e = e[e >= 0]
        hits += len(set(a.tolist()) & set(e.tolist()))
        total += len(e)
    return hits / max(total, 1)


def ivf_stage(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF stage inside ``index`` (through OPQ and refine wrappers), or ``None``."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def refine_stage(index: faiss.Index) -> faiss.IndexRefine | None:
    """``index`` as an ``IndexRefine`` when it is one."""
    down = faiss.downcast_index(index)
    return down if isinstance(down, faiss.IndexRefine) else None


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """Set nprobe on the IVF stage of ``index`` (no-op for indexes without one)."""
    ivf = ivf_stage(index)
    if ivf is not None:
        ivf.nprobe = nprobe


def tune_nprobe(index: faiss.Index, queries: np.ndarray, exact: np.ndarray, target: float) -> tuple[int | None, float]:
    """The smallest nprobe in :data:`NPROBES` (or nlist) whose recall@k reaches ``target``,
    or, where recall plateaus below it, the nprobe at the plateau.

    Recall of an IVF-PQ index is bounded by its codes (PQ, refinement), not only by nprobe:
    once doubling nprobe gains less than :data:`PLATEAU_GAIN` recall@k, more probes cost
    search time in proportion and buy almost nothing, so the smaller nprobe is kept (on 1M
    256-d static title embeddings: recall@10 0.942 at nprobe 16 vs 0.951 at 128, 5x the
    queries per second).

    Args:
        queries: ``(q, d)`` float32 held-out queries; ``exact``: their exact top-k ``(q, k)``.

    Returns:
        ``(nprobe, recall@k)``; nprobe is ``None`` for an index without an IVF stage. The index
        is left set to that nprobe.
    """
    k = exact.shape[1]
    ivf = ivf_stage(index)
    if ivf is None:
        return None, recall_at_k(index.search(queries, k)[1], exact)
    best: tuple[int, float] | None = None
    for nprobe in [p for p in NPROBES if p < ivf.nlist] + [ivf.nlist]:
        set_nprobe(index, nprobe)
        recall = recall_at_k(index.search(queries, k)[1], exact)
        if best is not None and recall - best[1] < PLATEAU_GAIN:
            set_nprobe(index, best[0])
            return best
        best = (nprobe, recall)
        if recall >= target:
            break
    assert best is not None  # the loop ran at least once (nlist itself)
    return best
