"""Training data: the split by id, e-CLIP group keys, and a decoded image cache.

* :func:`split_by_id`: a row is in validation when the SHA-1 of its id falls in the first
  ``val_fraction`` of the hash space: stable across runs, machines and catalog edits.
* :func:`group_keys`: rows that are the same product get the same key (union of equal values
  of ``--group-col``, equal normalised titles, equal image pHashes), the positives of
  e-CLIP's multi-positive loss.
* :func:`image_cache`: every image decoded once, resized to the training resolution, as
  ``(n, 3, S, S)`` uint8, saved in the run directory so that epochs (and resumed runs) are
  compute-bound, not decode-bound.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl
import torch

from eclip.catalog import Catalog
from eclip.catalog.images import ImageSettings
from eclip.encoders.embed import default_workers
from eclip.encoders.phash import PHASH_BYTES
from eclip.progress import progress_bar
from eclip.rundir import fingerprint, load_npy, read_json, save_npy, texts_digest, write_json

GROUP_SOURCES = ("col", "title", "phash")
_NON_WORD = re.compile(r"[^\w]+")


def split_by_id(ids: list[str], val_fraction: float = 0.2) -> np.ndarray:
    """``(n,)`` bool, True for validation rows (see the module docstring)."""
    cut = int(val_fraction * 2**32)
    return np.array(
        [int.from_bytes(hashlib.sha1(i.encode("utf-8")).digest()[:4], "big") < cut for i in ids], dtype=bool
    )


def normalise_title(title: str) -> str:
    """Lower-case, punctuation to spaces, whitespace collapsed: ``"Nike  T-Shirt!"`` -> ``"nike t shirt"``."""
    return " ".join(_NON_WORD.sub(" ", title.lower()).split())


def _components(n: int, pairs: list[np.ndarray]) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not pairs:
        return np.arange(n, dtype=np.int64)
    ab = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)
    graph = coo_matrix((np.ones(ab.shape[1]), (ab[0], ab[1])), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _equal_value_pairs(values: list) -> np.ndarray:
    first: dict = {}
    a, b = [], []
    for i, v in enumerate(values):
        if v is None or v == "":
            continue
        j = first.setdefault(v, i)
        if j != i:
            a.append(j)
            b.append(i)
    return np.array([a, b], dtype=np.int64).reshape(2, -1)


def group_keys(
    cat: Catalog,
    sources: tuple[str, ...],
    group_col: str | None = None,
    phash: np.ndarray | None = None,
    has_image: np.ndarray | None = None,
) -> np.ndarray:
    """e-CLIP group keys: ``(n,)`` int64, equal for rows linked by any source.

    Args:
        sources: among ``col`` (equal ``group_col`` values), ``title`` (equal normalised
            titles), ``phash`` (equal 64-bit image pHashes).
        phash, has_image: ``(n, 8)`` uint8 codes and ``(n,)`` bool, for ``phash``.

    Raises:
        ValueError: an unknown source, or ``col`` without ``group_col``.
    """
    n = len(cat)
    pairs = []
    for src in sources:
        if src == "col":
            if group_col is None:
                raise ValueError("group source 'col' needs --group-col")
            pairs.append(_equal_value_pairs(cat.table.get_column(group_col).cast(pl.String).to_list()))
        elif src == "title":
            pairs.append(_equal_value_pairs([normalise_title(t) or None for t in cat.texts]))
        elif src == "phash":
            if phash is not None:
                assert has_image is not None, "phash needs has_image"
                codes = [phash[i].tobytes() if has_image[i] else None for i in range(n)]
                pairs.append(_equal_value_pairs(codes))
        else:
            raise ValueError(f"unknown group source {src!r}; choose among {', '.join(GROUP_SOURCES)}")
    return _components(n, pairs)


class _Resize:
    """PIL image -> ``(3, S, S)`` uint8 tensor (squashed to a square, bicubic)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img):  # noqa: ANN001, ANN204
        from PIL import Image

        arr = np.asarray(img.resize((self.size, self.size), Image.BICUBIC), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def image_cache(
    cat: Catalog, images: ImageSettings, size: int, folder: Path, workers: int = 0, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode every image once at ``size`` px; reuse the cache in ``folder`` when it matches.

    The pixels are written straight into a memory-mapped ``.npy`` (temporary file, renamed
    when complete) and read back memory-mapped, so a catalog larger than RAM still trains.

    Returns:
        ``(pixels, has_image, phash)``: ``(n, 3, size, size)`` uint8 memory-mapped array
        (zeros where the image failed), ``(n,)`` bool and ``(n, 8)`` uint8 pHash codes.
    """
    import os

    from torch.utils.data import DataLoader, Dataset

    from eclip.encoders.embed import _collate, _ImageRows

    assert cat.images is not None, "image_cache needs a catalog with an image column"
    key = fingerprint(size, texts_digest([r or "" for r in cat.images]), str(images.root))
    meta = folder / "images.json"
    if read_json(meta).get("key") == key:
        return (
            np.load(folder / "images.npy", mmap_mode="r"),
            load_npy(folder / "has_image.npy"),
            load_npy(folder / "phash.npy"),
        )
    n = len(cat)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".images.{os.getpid()}.npy"
    pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
    ok = np.zeros(n, bool)
    codes = np.zeros((n, PHASH_BYTES), np.uint8)
    loader = DataLoader(
        cast("Dataset[tuple]", _ImageRows(cat.images, images, _Resize(size), True)),  # any map-style object works
        batch_size=batch_size,
        num_workers=default_workers() if workers < 0 else workers,
        collate_fn=_collate,
    )
    try:
        with progress_bar(f"decoding {n:,} images at {size}px", n, unit="images") as (bar, task):
            for items in loader:
                for r, pix, code, failure in items:
                    if failure is None:
                        pixels[r], codes[r], ok[r] = pix.numpy(), code, True
                bar.advance(task, len(items))
        pixels.flush()
        del pixels
        os.replace(tmp, folder / "images.npy")
    finally:
        tmp.unlink(missing_ok=True)
    save_npy(ok, folder / "has_image.npy")
    save_npy(codes, folder / "phash.npy")
    write_json({"key": key, "size": size, "rows": n, "images_ok": int(ok.sum())}, meta)
    return np.load(folder / "images.npy", mmap_mode="r"), ok, codes
