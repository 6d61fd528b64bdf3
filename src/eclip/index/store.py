"""Standalone index directories: ``eclip index build|info|query``.

An index directory holds ``index.faiss`` (the whole CPU index: coarse quantizer, codes and
the re-ranking store), ``ids.parquet`` (row -> catalog id) and ``manifest.json`` (the model
and embeddings key it was built from, dimension, metric, faiss factory string, nprobe, the
measured recall@k against exact search, bytes per vector, build time).

Parameters are chosen from n, d and a memory budget, in the spirit of autofaiss:

* fewer than ``flat_max`` rows: ``Flat`` (exact);
* otherwise ``IVF{nlist},PQ{m}x8`` with ``nlist ~ 4 sqrt(n)`` (power of two), ``m = d/8``
  (a divisor of d), and a re-ranking store chosen by the budget: ``Refine(Flat)`` (4d bytes per
  vector), ``Refine(SQfp16)`` (2d), ``Refine(SQ8)`` (d, the default: recall close to exact
  re-ranking at a quarter of the float32 size), or none. Any faiss factory string overrides.

The coarse quantizer trains on ``max(39 * nlist, ...)`` sampled vectors (the FAISS wiki's
minimum), capped at ``256 * nlist``; nprobe is then raised until recall@k on held-out
queries reaches the target. References: FAISS wiki, "Guidelines to choose an index" and
"The index factory"; autofaiss's ``get_optimal_index_keys_v2``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

from eclip.errors import RunDirError
from eclip.index.build import _exact_topk, _pick_m, _pick_nlist, recall_at_k
from eclip.progress import console, progress_bar
from eclip.rundir import MANIFEST, atomic_path, read_json, write_json, write_parquet

FLAT_MAX = 200_000
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


def choose_factory(n: int, d: int, max_memory: int | None = None, flat_max: int = FLAT_MAX) -> str:
    """The faiss factory string for ``n`` vectors of dimension ``d`` within ``max_memory`` bytes.

    Raises:
        RunDirError: not even IVF-PQ codes fit the budget.
    """
    if n < flat_max and (max_memory is None or 4 * d * n <= max_memory):
        return "Flat"
    nlist, m = _pick_nlist(n), _pick_m(d)
    base = f"IVF{nlist},PQ{m}x8"
    per_vector = m + 8  # PQ code + the id stored in the inverted list
    for refine, extra in (("Refine(SQ8)", d), ("", 0)):
        if max_memory is None or (per_vector + extra) * n + 4 * d * nlist <= max_memory:
            return f"{base},{refine}" if refine else base
    raise RunDirError(f"{n:,} vectors of dimension {d} do not fit in {max_memory:,} bytes even as {m}-byte PQ codes; raise --max-memory.")


def _ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _refine_stage(index: faiss.Index) -> Any:
    down = faiss.downcast_index(index)
    return down if isinstance(down, faiss.IndexRefine) else None


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """Set nprobe on the IVF stage of ``index`` (no-op for indexes without one)."""
    ivf = _ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe


@dataclass
class IndexDir:
    """An opened index directory: the faiss index, row ids and manifest."""

    index: faiss.Index
    ids: list[str]
    manifest: dict[str, Any]

    def check_compatible(self, model: dict[str, Any] | None, dim: int) -> None:
        """Refuse vectors of another model or dimension.

        Raises:
            RunDirError: the dimension or the model (its name and weights) differ.
        """
        want = self.manifest.get("model") or {}
        if dim != self.manifest["dim"]:
            raise RunDirError(f"query vectors have dimension {dim}, the index {self.manifest['dim']} ({want.get('name')}); embed with the index's model.")
        if model is not None and want and (model.get("name"), model.get("weights")) != (want.get("name"), want.get("weights")):
            raise RunDirError(f"query vectors come from model {model.get('name')!r} but the index was built from {want.get('name')!r}; refusing to mix them.")

    def search(self, queries: np.ndarray, k: int, model: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, rows)`` of ``(q, d)`` float32 L2-normalised queries (rows ``-1`` when fewer)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        self.check_compatible(model, q.shape[1])
        return self.index.search(q, k)


def build_index_dir(
    vectors: np.ndarray,
    ids: list[str],
    out: str | Path,
    model: dict[str, Any] | None = None,
    key: str = "",
    factory: str | None = None,
    max_memory: int | None = None,
    target_recall: float = 0.95,
    k: int = 10,
    k_factor: int = 10,
    tune_queries: int = 1000,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build, tune and save an index directory over ``vectors``.

    Args:
        vectors: ``(n, d)`` float32, L2-normalised (inner product = cosine).
        ids: ``n`` catalog ids, row order.
        model, key: what made the vectors (from the embeddings manifest), checked at query.
        factory: a faiss factory string; ``None`` chooses one (:func:`choose_factory`).
        max_memory: bytes the index may take.
        target_recall: recall@k against exact search that nprobe tuning must reach.
        k_factor: a re-ranking store re-scores ``k * k_factor`` candidates.
        extra: more fields for the manifest (e.g. where the vectors came from).

    Returns:
        The manifest.

    Raises:
        RunDirError: ``ids`` and ``vectors`` differ in length, or the budget is too small.
    """
    xb = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = xb.shape
    if len(ids) != n:
        raise RunDirError(f"{len(ids):,} ids for {n:,} vectors.")
    factory = factory or choose_factory(n, d, max_memory)
    t0 = time.perf_counter()
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    ivf = _ivf(index)
    n_train = 0
    if not index.is_trained:
        nlist = ivf.nlist if ivf is not None else 256
        n_train = int(min(n, max(39 * nlist, 10_000), 256 * nlist))
        with console.status(f"training {factory} on {n_train:,} vectors"):
            index.train(xb[np.sort(rng.choice(n, n_train, replace=False))])
    step = 65536
    with progress_bar(f"indexing {n:,} vectors", n) as (bar, task):
        for s in range(0, n, step):
            index.add(xb[s : s + step])
            bar.advance(task, min(step, n - s))
    q_ids = np.sort(rng.choice(n, min(tune_queries, n), replace=False))
    exact = _exact_topk(xb, xb[q_ids], k)
    nprobe, recall = None, 1.0
    refine = _refine_stage(index)
    if refine is not None:
        refine.k_factor = k_factor
    if ivf is not None:
        for nprobe in [p for p in NPROBES if p < ivf.nlist] + [ivf.nlist]:
            set_nprobe(index, nprobe)
            recall = recall_at_k(index.search(xb[q_ids], k)[1], exact)
            if recall >= target_recall:
                break
    else:
        recall = recall_at_k(index.search(xb[q_ids], k)[1], exact)
    seconds = time.perf_counter() - t0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))
    write_parquet(pl.DataFrame({"id": list(ids)}, schema={"id": pl.String}), out / "ids.parquet")
    size = (out / "index.faiss").stat().st_size
    manifest = {
        "job": "index",
        "model": model,
        "key": key,
        "n": n,
        "dim": d,
        "metric": "inner_product",
        "factory": factory,
        "nprobe": nprobe,
        "k_factor_rf": k_factor if refine is not None else None,
        f"recall@{k}": round(recall, 4),
        "target_recall": target_recall,
        "tune_queries": int(len(q_ids)),
        "train_vectors": n_train,
        "bytes": size,
        "bytes_per_vector": round(size / max(n, 1), 1),
        "fraction_of_float32": round(size / max(4 * d * n, 1), 4),
        "build_seconds": round(seconds, 2),
        **(extra or {}),
    }
    write_json(manifest, out / MANIFEST)
    return manifest


def open_index_dir(folder: str | Path, mmap: bool = False) -> IndexDir:
    """Open an index directory; ``mmap`` maps the index file instead of reading it (faiss
    ``IO_FLAG_MMAP``), for indexes larger than RAM.

    Raises:
        RunDirError: not an index directory.
    """
    folder = Path(folder)
    manifest = read_json(folder / MANIFEST)
    if manifest.get("job") != "index" or not (folder / "index.faiss").exists():
        raise RunDirError(f"{folder}: not an index directory (run `eclip index build` first).")
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    index = faiss.read_index(str(folder / "index.faiss"), flags)
    if manifest.get("nprobe"):
        set_nprobe(index, int(manifest["nprobe"]))
    if manifest.get("k_factor_rf") and _refine_stage(index) is not None:
        _refine_stage(index).k_factor = int(manifest["k_factor_rf"])
    ids = pl.read_parquet(folder / "ids.parquet")["id"].to_list()
    return IndexDir(index, ids, manifest)
