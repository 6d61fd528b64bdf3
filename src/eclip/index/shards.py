"""Sharded builds of an index directory: ``shards/I-of-N/`` slices added to copies of the
one trained index (``eclip index build --shard i/N`` on several machines, or ``--ray``), then
merged by :func:`eclip.index.store.merge_index_dir` into the index a single build makes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from eclip.errors import RunDirError
from eclip.index.trained import TRAINED, add_in_steps, trained_index
from eclip.progress import console
from eclip.rundir import atomic_path, read_json, write_json


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``.

    Raises:
        RunDirError: not of that form.
    """
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise RunDirError(f"--shard {text!r}: write it as i/N, e.g. 0/4 for the first of 4 shards.") from None
    if not 0 <= i < n:
        raise RunDirError(f"--shard {text!r}: i must be in 0..{n - 1}.")
    return i, n


def shard_rows(i: int, n_shards: int, n: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of shard ``i`` of ``n_shards`` over ``n`` rows (contiguous slices)."""
    return i * n // n_shards, (i + 1) * n // n_shards


def build_shard(
    out: str | Path,
    part: np.ndarray,
    shard: tuple[int, int],
    start: int,
    key: str = "",
    extra: dict[str, Any] | None = None,
    trained: tuple[faiss.Index, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Add one shard's vectors to a copy of ``out``'s trained index (:func:`trained_index`
    must have written it) and write ``out/shards/i-of-N`` (its index and ``shard.json``);
    :func:`merge_index_dir` combines the shards. A shard already built on the same trained
    index and embeddings is left as it is, so a rerun redoes only the missing ones.

    Args:
        part: ``(m, d)`` float32, L2-normalised: the shard's rows, catalog rows
            ``start..start + m``.
        shard: ``(i, N)``. key: the embeddings' key. trained: the trained index and its
            meta, when the caller has them (else read from ``out``).

    Returns:
        The shard's ``shard.json``.

    Raises:
        RunDirError: ``out`` has no trained index, or one trained for other embeddings.
    """
    out = Path(out)
    t0 = time.perf_counter()
    if trained is None:
        meta = read_json(out / "trained.json")
        if not (out / TRAINED).exists() or not meta:
            raise RunDirError(
                f"{out}: no trained index to add shard {shard[0]}/{shard[1]} to; train it first (eclip index build)."
            )
        trained = trained_index(out, part, meta["factory"], key, meta.get("seed", 0))
    index, info = trained
    i, n_shards = shard
    folder = out / "shards" / f"{i}-of-{n_shards}"
    old = read_json(folder / "shard.json")
    if old.get("trained_digest") == info["digest"] and old.get("key") == key:
        console.print(f"{out}: shard {i}/{n_shards} already built; nothing to do.")
        return old
    stop = start + len(part)
    add_in_steps(index, part, f"vectors (shard {i}/{n_shards}, rows {start:,}-{stop:,})")
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))
    meta = {
        "shard": i,
        "shards": n_shards,
        "start": start,
        "stop": stop,
        "trained_digest": info["digest"],
        "key": key,
        "seconds": round(time.perf_counter() - t0, 2),
        **(extra or {}),
    }
    write_json(meta, folder / "shard.json")
    return meta


def shard_metas(out: str | Path) -> list[dict[str, Any]]:
    """The ``shard.json`` of every shard built under ``out``."""
    return [read_json(p) for p in sorted((Path(out) / "shards").glob("*-of-*/shard.json"))]
