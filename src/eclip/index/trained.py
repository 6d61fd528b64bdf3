"""The empty trained index every build, shard and add of an index directory starts from
(``trained.faiss`` + ``trained.json``), and the two ways vectors enter an index: adding them
in steps and merging another index of the same training."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from eclip.errors import RunDirError
from eclip.index.autotune import ivf_stage, training_size
from eclip.index.gpu import gpu_quantizer, num_gpus
from eclip.progress import console, progress_bar
from eclip.rundir import read_json, write_json

TRAINED = "trained.faiss"
ADD_STEP = 65536


def file_digest(path: Path) -> str:
    """First 16 hex digits of the SHA-256 of the file at ``path`` (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def trained_index(
    out: Path, xb: np.ndarray, factory: str, key: str = "", seed: int = 0
) -> tuple[faiss.Index, dict[str, Any]]:
    """The empty trained index of ``out``: read from ``trained.faiss`` when present, else
    trained on a sample of ``xb`` (``(n, d)`` float32) and written exclusively (if another
    process wins the race, its file is used), so all shards share one.

    Returns:
        ``(index, trained_meta)``; the meta holds the factory, key, dim, n, training size and
        the file's digest.

    Raises:
        RunDirError: ``out`` holds a trained index for other embeddings or another factory.
    """
    n, d = xb.shape
    path, meta_path = out / TRAINED, out / "trained.json"
    want = {"factory": factory, "key": key, "dim": d, "n": n, "seed": seed}
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        n_train = 0
        ivf = ivf_stage(index)
        ivf_any: Any = (
            faiss.downcast_index(ivf) if ivf is not None else None
        )  # IVFPQ's attribute, absent from the base stub
        if ivf_any is not None and hasattr(ivf_any, "do_polysemous_training"):
            ivf_any.do_polysemous_training = False  # 10x the training time, unused by search
        if not index.is_trained:
            n_train = training_size(ivf.nlist if ivf is not None else None, n)
            sample = xb[np.sort(np.random.default_rng(seed).choice(n, n_train, replace=False))]
            t0 = time.perf_counter()
            with (
                console.status(f"training {factory} on {n_train:,} vectors{' (GPU)' if num_gpus() else ''}"),
                gpu_quantizer(index),
            ):
                index.train(np.ascontiguousarray(sample, dtype=np.float32))
            want["train_seconds"] = round(time.perf_counter() - t0, 2)
        want["train_vectors"] = n_train
        write_json(want, meta_path)
        tmp = path.with_name(f".{TRAINED}.{os.getpid()}")
        faiss.write_index(index, str(tmp))
        try:
            os.link(tmp, path)  # exclusive create: the first writer wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    meta = read_json(meta_path)
    if {k: meta.get(k) for k in ("factory", "key", "dim")} != {k: want[k] for k in ("factory", "key", "dim")}:
        raise RunDirError(
            f"{out} holds an index trained as {meta.get('factory')!r} for embeddings {meta.get('key')!r} (dim {meta.get('dim')}), "
            f"not {factory!r} for {key!r} (dim {d}); refusing to mix them: remove that folder or choose another --out."
        )
    meta["digest"] = file_digest(path)
    return faiss.read_index(str(path)), meta


def add_in_steps(index: faiss.Index, xb: np.ndarray, what: str) -> None:
    """Add ``xb`` (``(n, d)`` float32, L2-normalised) to ``index`` in steps of
    :data:`ADD_STEP` rows, with a progress bar naming ``what``, on GPUs when there are any."""
    n = len(xb)
    with progress_bar(f"adding {n:,} {what}", n) as (bar, task), gpu_quantizer(index):
        for s in range(0, n, ADD_STEP):
            index.add(np.ascontiguousarray(xb[s : s + ADD_STEP], dtype=np.float32))
            bar.advance(task, min(ADD_STEP, n - s))


def merge_into(dst: faiss.Index, src: faiss.Index) -> None:
    """Append every vector of ``src`` to ``dst`` (same trained index), keeping row numbers:
    ``src``'s row ``i`` becomes ``dst.ntotal + i``. Works through OPQ and refine wrappers,
    which faiss's ``merge_from`` does not (faiss contrib ``ondisk``/``merge_from`` pattern)."""
    n0, n1 = dst.ntotal, src.ntotal
    d: Any = faiss.downcast_index(dst)  # the wrapper's own attributes (base_index, index) are not on Index
    s: Any = faiss.downcast_index(src)
    if isinstance(d, faiss.IndexRefine):
        merge_into(d.base_index, s.base_index)
        merge_into(d.refine_index, s.refine_index)
    elif isinstance(d, faiss.IndexPreTransform):
        merge_into(d.index, s.index)
    elif isinstance(d, faiss.IndexIVF):
        d.merge_from(s, n0)  # shift src's ids (0..n1) after dst's
    else:
        d.merge_from(s, 0)
    d.ntotal = n0 + n1
