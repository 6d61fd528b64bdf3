"""Read an embeddings directory written by :func:`eclip.encoders.embed.embed_catalog` as one.

Shards are read in shard order, whichever rank wrote them, so a ``torchrun`` run with ``N``
ranks reads exactly like a single-process run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.errors import RunDirError
from eclip.rundir import MANIFEST, read_json

#: Sub-folder of an embeddings directory holding one folder per shard.
SHARDS = "shards"
#: Per-shard (and merged) table of images that could not be read.
FAILURES = "failures.parquet"
FAILURE_SCHEMA = {"id": pl.String, "path": pl.String, "reason": pl.String, "detail": pl.String}


@dataclass
class Embeddings:
    """All rows of an embeddings directory, in catalog order.

    Attributes:
        ids: ``n`` row ids.
        text: ``(n, d)`` float32, L2-normalised title embeddings (rows without text hold the
            embedding of the empty string; see ``has_text``).
        fused: ``(n, d)`` float32, L2-normalised (zero where a row has neither text nor image);
            read from disk when first used (a text-only match never reads it: at 1M rows of
            256-d vectors that is 1 GiB not held).
        image: ``(n, d)`` float32, L2-normalised, or ``None`` for text-only models.
        phash: ``(n, 8)`` uint8 packed 64-bit pHash, or ``None`` without an image column.
        has_text, has_image: ``(n,)`` bool.
        manifest: the directory's manifest (model, settings, key).
        array_files: per array name, its shard files in row order (what ``fused`` is read from).
    """

    ids: list[str]
    text: np.ndarray
    has_text: np.ndarray
    has_image: np.ndarray
    image: np.ndarray | None = None
    phash: np.ndarray | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    array_files: dict[str, list[Path]] = field(default_factory=dict)
    _fused: np.ndarray | None = field(default=None, repr=False)

    @property
    def fused(self) -> np.ndarray:
        if self._fused is None:
            self._fused = read_rows(self.array_files["fused"], len(self.ids))
        return self._fused

    @property
    def key(self) -> str:
        return str(self.manifest.get("key", ""))

    def vectors(self, modality: str) -> tuple[np.ndarray | None, np.ndarray]:
        """``(array, present)`` of a modality: ``text``, ``image`` or ``fused``. The array is
        ``(n, d)`` float32 (``None`` when these embeddings lack it); ``present`` is ``(n,)``
        bool, the rows that have it (fused: text or image).

        Raises:
            KeyError: an unknown modality.
        """
        arrays = {"text": self.text, "image": self.image, "fused": self.fused}
        present = {"text": self.has_text, "image": self.has_image, "fused": self.has_text | self.has_image}
        return arrays[modality], present[modality]


def _shard_dirs(folder: Path, n_shards: int) -> list[Path]:
    return [folder / SHARDS / f"{i:05d}" for i in range(n_shards)]


def read_failures(folder: str | Path, n_shards: int) -> pl.DataFrame:
    """Every shard's image failures (id, path, reason, detail), in row order."""
    parts = [pl.read_parquet(d / FAILURES) for d in _shard_dirs(Path(folder), n_shards) if (d / FAILURES).exists()]
    return pl.concat(parts) if parts else pl.DataFrame(schema=FAILURE_SCHEMA)


def load_embeddings(folder: str | Path) -> Embeddings:
    """Load a complete embeddings directory.

    Raises:
        RunDirError: no manifest, an unfinished run (rerun the same ``eclip embed`` command),
            or shards that belong to another run.
    """
    folder = Path(folder)
    manifest = read_json(folder / MANIFEST)
    if manifest.get("job") != "embed":
        raise RunDirError(f"{folder}: not an embeddings directory (no manifest.json from `eclip embed`).")
    if manifest.get("status") != "complete":
        raise RunDirError(
            f"{folder}: the embedding run did not finish; rerun the same `eclip embed` command to complete it."
        )
    dirs = _shard_dirs(folder, int(manifest["shards"]))
    missing = [d.name for d in dirs if not (d / "shard.json").exists()]
    if missing:
        raise RunDirError(
            f"{folder}: shard(s) {', '.join(missing[:5])} missing; rerun the same `eclip embed` command to redo them."
        )
    ids: list[str] = []
    for d in dirs:
        ids.extend(pl.read_parquet(d / "ids.parquet")["id"].to_list())
    if len(ids) != int(manifest["rows"]):
        raise RunDirError(
            f"{folder}: shards hold {len(ids):,} rows but the manifest says {manifest['rows']:,}; rerun `eclip embed`."
        )
    files = {name: [d / f"{name}.npy" for d in dirs] for name in manifest["arrays"]}
    eager = {name: read_rows(parts, len(ids)) for name, parts in files.items() if name != "fused"}
    return Embeddings(
        ids=ids,
        text=eager["text"],
        has_text=eager["has_text"],
        has_image=eager["has_image"],
        image=eager.get("image"),
        phash=eager.get("phash"),
        manifest=manifest,
        array_files=files,
    )


def read_rows(parts: list[Path], rows: int) -> np.ndarray:
    """The ``.npy`` shard files ``parts`` stacked in order: one array of ``rows`` rows, filled
    shard by shard from memory-mapped files (never two copies of the whole array at once).

    Raises:
        RunDirError: the shards hold another number of rows.
    """
    first = np.load(parts[0], mmap_mode="r", allow_pickle=False)
    out = np.empty((rows, *first.shape[1:]), dtype=first.dtype)
    at = 0
    for part in parts:
        shard = np.load(part, mmap_mode="r", allow_pickle=False)
        if at + len(shard) > rows:
            break
        out[at : at + len(shard)] = shard
        at += len(shard)
        del shard
    if at != rows:
        raise RunDirError(
            f"{parts[0].parent.parent.parent}: shards of {parts[0].stem} do not hold {rows:,} rows; rerun `eclip embed`."
        )
    return out
