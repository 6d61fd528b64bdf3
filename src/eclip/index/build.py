"""Build, save and load the FAISS index over a run's embeddings.

The index kind follows the catalog's size:

* below ``flat_max`` rows, ``IndexFlatIP``: exact inner-product search;
* from ``flat_max`` rows up, ``IVF{nlist},PQ{m}x{nbits}`` (inner product) wrapped in
  ``IndexRefine`` with an exact ``IndexFlatIP`` (the refine step of the FAISS wiki, "Faiss
  indexes", and Jégou et al., "Searching in one billion vectors: re-rank with source coding",
  ICASSP 2011). The IVF-PQ stage proposes ``k * k_factor`` candidates and the exact stage
  re-ranks them. ``nprobe`` is then tuned on a sample of queries until recall@k against exact
  search reaches ``target_recall``; the measured recall is recorded.

When ``faiss.get_num_gpus() > 0`` the Flat index, or the IVF-PQ stage, is moved to every GPU
with ``faiss.index_cpu_to_all_gpus``; the saved index is always the CPU copy.

An index remembers the embeddings it was built from (their key: model and texts) and its
settings in ``index.json``; :func:`load_index` refuses an index whose key or settings differ.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from eclip.errors import RunDirError
from eclip.progress import console, progress_bar
from eclip.rundir import atomic_path, read_json, write_json


@dataclass(frozen=True)
class IndexSettings:
    """How to index.

    Attributes:
        flat_max: catalogs with fewer rows get exact Flat search.
        nlist: IVF cells; ``None`` picks ``4 * sqrt(n)`` rounded to a power of two.
        pq_m: PQ sub-quantizers; must divide the dimension. ``None`` picks ``d / 8`` rounded
            down to a divisor of ``d``.
        pq_nbits: bits per PQ code.
        k_factor: refine re-ranks ``k * k_factor`` IVF-PQ candidates exactly.
        target_recall: recall@k against exact search that nprobe tuning must reach.
        tune_queries: sampled queries used to tune nprobe and measure recall.
        seed: sampling seed.
    """

    flat_max: int = 200_000
    nlist: int | None = None
    pq_m: int | None = None
    pq_nbits: int = 8
    k_factor: int = 4
    target_recall: float = 0.95
    tune_queries: int = 1000
    seed: int = 0


def _pick_nlist(n: int) -> int:
    return int(max(16, min(65536, 2 ** round(math.log2(4 * math.sqrt(n))))))


def _pick_m(d: int) -> int:
    m = max(1, d // 8)
    while d % m:
        m -= 1
    return m


def _use_gpu() -> bool:
    return faiss.get_num_gpus() > 0


def _to_gpu(index: faiss.Index) -> faiss.Index:
    return faiss.index_cpu_to_all_gpus(index) if _use_gpu() else index


@dataclass
class KnnIndex:
    """A searchable index plus what built it.

    Attributes:
        index: the FAISS index searched (on GPU when there is one).
        kind: ``"flat"`` or ``"ivfpq"``.
        info: settings, key of the embeddings, measured recall@k and timings.
    """

    index: faiss.Index
    kind: str
    info: dict[str, Any]
    _keep: tuple = ()

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def set_nprobe(self, nprobe: int) -> None:
        """Set IVF ``nprobe`` (no-op for Flat)."""
        if self.kind != "ivfpq":
            return
        base = self._keep[0]
        if _use_gpu():
            faiss.GpuParameterSpace().set_index_parameter(base, "nprobe", nprobe)
        else:
            faiss.extract_index_ivf(base).nprobe = nprobe
        self.info["nprobe"] = nprobe

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product. ``queries``: ``(q, d)`` float32, L2-normalised.

        Returns ``(scores, ids)``: ``(q, k)`` float32 cosine similarities and int64 row
        positions (``-1`` where fewer than ``k`` vectors exist).
        """
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def _exact_topk(xb: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    flat = faiss.IndexFlatIP(xb.shape[1])
    flat.add(xb)
    return flat.search(queries, k)[1]


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


def _refined(
    base: faiss.Index, d: int, k_factor: int, xb: np.ndarray | None = None
) -> tuple[faiss.Index, faiss.Index, faiss.IndexFlatIP]:
    """Move the IVF-PQ ``base`` to the GPU(s) if any and wrap it with an exact
    ``IndexFlatIP`` refine stage holding ``xb`` (``(ntotal, d)`` float32, the vectors the base
    already encodes; ``None`` for an empty base). Returns ``(index, base, refine)``."""
    base = _to_gpu(base)
    refine = faiss.IndexFlatIP(d)
    if xb is not None:
        refine.add(np.ascontiguousarray(xb, dtype=np.float32))
    index = faiss.IndexRefine(base, refine)
    index.k_factor = k_factor
    return index, base, refine


def _build_ivfpq(xb: np.ndarray, s: IndexSettings, k: int) -> KnnIndex:
    n, d = xb.shape
    nlist = s.nlist or _pick_nlist(n)
    m = s.pq_m or _pick_m(d)
    if d % m:
        raise RunDirError(f"PQ m={m} does not divide the embedding dimension {d}; choose a divisor of {d}.")
    rng = np.random.default_rng(s.seed)
    n_train = min(n, max(64 * nlist, 2 ** s.pq_nbits * 40))
    train = xb[np.sort(rng.choice(n, n_train, replace=False))]
    base = faiss.index_factory(d, f"IVF{nlist},PQ{m}x{s.pq_nbits}", faiss.METRIC_INNER_PRODUCT)
    with console.status(f"training IVF{nlist},PQ{m}x{s.pq_nbits} on {n_train:,} vectors"):
        base.train(train)
    index, base, refine = _refined(base, d, s.k_factor)
    step = 65536
    with progress_bar(f"indexing {n:,} vectors", n) as (bar, task):
        for start in range(0, n, step):
            index.add(xb[start : start + step])
            bar.advance(task, min(step, n - start))
    knn = KnnIndex(index, "ivfpq", {"nlist": nlist, "pq": f"{m}x{s.pq_nbits}", "k_factor": s.k_factor}, (base, refine))

    q_ids = np.sort(rng.choice(n, min(s.tune_queries, n), replace=False))
    exact = _exact_topk(xb, xb[q_ids], k)
    recall, nprobe = 0.0, 1
    for nprobe in (4, 8, 16, 32, 64, 128, 256, 512, 1024):
        if nprobe > nlist:
            break
        knn.set_nprobe(nprobe)
        recall = recall_at_k(knn.search(xb[q_ids], k)[1], exact)
        if recall >= s.target_recall:
            break
    knn.set_nprobe(min(nprobe, nlist))
    knn.info.update({f"recall@{k}": round(recall, 4), "tune_queries": int(len(q_ids))})
    return knn


def build_index(xb: np.ndarray, settings: IndexSettings = IndexSettings(), k: int = 10, key: str = "") -> KnnIndex:
    """Build an index over ``xb``.

    Args:
        xb: ``(n, d)`` float32, L2-normalised rows.
        settings: see :class:`IndexSettings`.
        k: the neighbours per query the caller will ask for (nprobe is tuned for it).
        key: identifies the embeddings (model and texts); saved and checked on load.

    Returns:
        A :class:`KnnIndex`; ``info`` holds kind, settings, key, GPU use and, for IVF-PQ, the
        chosen nprobe and the measured recall@k against exact search.
    """
    xb = np.ascontiguousarray(xb, dtype=np.float32)
    n, d = xb.shape
    if n < settings.flat_max:
        base = faiss.IndexFlatIP(d)
        base.add(xb)
        knn = KnnIndex(_to_gpu(base), "flat", {f"recall@{k}": 1.0}, (base,))
    else:
        knn = _build_ivfpq(xb, settings, k)
    knn.info.update(
        {"kind": knn.kind, "n": n, "dim": d, "key": key, "gpu": _use_gpu(), "settings": asdict(settings)}
    )
    return knn


def save_index(knn: KnnIndex, folder: str | Path) -> None:
    """Write ``index.faiss`` (CPU copy; for IVF-PQ the IVF-PQ stage only, since the exact
    stage is rebuilt from the embeddings) and ``index.json`` into ``folder``, atomically."""
    folder = Path(folder)
    cpu = knn._keep[0]
    if _use_gpu():
        cpu = faiss.index_gpu_to_cpu(cpu)
    with atomic_path(folder / "index.faiss") as tmp:
        faiss.write_index(cpu, str(tmp))
    write_json(knn.info, folder / "index.json")


def load_index(folder: str | Path, xb: np.ndarray, key: str, settings: IndexSettings) -> KnnIndex | None:
    """Reopen a saved index if it was built from the same embeddings and settings.

    Args:
        folder: where :func:`save_index` wrote.
        xb: the embeddings, ``(n, d)`` float32 (the exact refine stage is rebuilt from them).
        key: the embeddings' key; ``settings``: the settings asked for now.

    Returns:
        The index, or ``None`` when nothing is saved there.

    Raises:
        RunDirError: the saved index was built from other embeddings or settings; it is never
            mixed with these, so delete the folder or use another ``--out``.
    """
    folder = Path(folder)
    info = read_json(folder / "index.json")
    if not info or not (folder / "index.faiss").exists():
        return None
    if info.get("key") != key or info.get("settings") != asdict(settings) or info.get("n") != len(xb):
        raise RunDirError(
            f"{folder}: holds an index built from other embeddings or settings "
            f"(model/texts key {info.get('key')!r}, asked {key!r}). Refusing to mix them: "
            "remove that folder or write to a new --out."
        )
    base = faiss.read_index(str(folder / "index.faiss"))
    if info["kind"] == "flat":
        return KnnIndex(_to_gpu(base), "flat", info, (base,))
    index, base, refine = _refined(base, xb.shape[1], info["k_factor"], xb)
    knn = KnnIndex(index, "ivfpq", info, (base, refine))
    knn.set_nprobe(info["nprobe"])
    return knn
