"""Running faiss on GPUs when there are any (the ``gpu`` extra installs ``faiss-gpu-cu12``).

* Training: the IVF k-means assigns points with a GPU flat index (``IndexIVF.clustering_index``,
  the FAISS wiki's "Faster search / GPU k-means" recipe).
* Adding and searching: the coarse quantizer is swapped for a GPU copy, so the n x nlist
  assignment products run on the GPU; for search the whole IVF-PQ or Flat stage is cloned to the
  GPUs with ``index_cpu_to_all_gpus`` when faiss can clone it (a ``Refine`` store stays on the
  CPU and re-ranks the GPU's candidates).

What is saved is always the CPU index, readable without a GPU. On machines without a GPU
every helper here is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import faiss

from eclip.index.autotune import ivf_stage, refine_stage
from eclip.progress import console


def num_gpus() -> int:
    """GPUs faiss can use (0 with ``faiss-cpu``)."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


@contextmanager
def gpu_quantizer(index: faiss.Index) -> Iterator[None]:
    """While open, the IVF stage of ``index`` trains, assigns and adds with a GPU coarse
    quantizer; the CPU quantizer is put back (updated) on exit. No-op without GPUs or IVF."""
    ivf = ivf_stage(index)
    if ivf is None or num_gpus() == 0:
        yield
        return
    cpu_q = ivf.quantizer
    flat = faiss.IndexFlatIP(ivf.d) if ivf.metric_type == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(ivf.d)
    ivf.clustering_index = faiss.index_cpu_to_all_gpus(flat)
    gpu_q = faiss.index_cpu_to_all_gpus(cpu_q) if ivf.is_trained else None
    if gpu_q is not None:
        ivf.quantizer = gpu_q
    try:
        yield
    finally:
        if gpu_q is not None:
            ivf.quantizer = cpu_q
        ivf.clustering_index = None  # type: ignore[assignment]  # faiss's stub types the pointer as non-null


def searchable(index: faiss.Index) -> tuple[faiss.Index, tuple]:
    """A search-only copy of ``index`` on the GPUs, plus objects to keep alive with it.

    Returns ``(index, ())`` unchanged without GPUs. Falls back to the CPU index, with a
    warning, when faiss cannot clone a stage to the GPU.
    """
    if num_gpus() == 0:
        return index, ()
    refine = refine_stage(index)
    base = refine.base_index if refine is not None else index
    try:
        gpu_base = faiss.index_cpu_to_all_gpus(base)
    except RuntimeError as exc:
        console.print(f"[yellow]searching on the CPU: faiss cannot move this index to the GPU ({exc}).[/]")
        return index, ()
    if refine is None:
        return gpu_base, (index,)
    wrapped = faiss.IndexRefine(gpu_base, refine.refine_index)
    wrapped.k_factor = refine.k_factor
    return wrapped, (index, gpu_base)
