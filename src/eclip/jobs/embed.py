"""The ``embed`` job: a catalog's titles (and images) into a resumable embeddings directory."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eclip.catalog import load_catalog
from eclip.catalog.images import MAX_IMAGE_BYTES, URL_TIMEOUT_S, ImageSettings
from eclip.encoders import DEFAULT_MODEL, Dist, EmbedSettings, embed_catalog, load_encoder
from eclip.errors import CatalogError
from eclip.progress import console
from eclip.rundir import locked


@dataclass
class EmbedConfig:
    """Settings of :func:`embed`; recorded in the embeddings manifest.

    Attributes:
        model: model spec (see :mod:`eclip.encoders.spec`).
        id_col, text_cols, sep, encoding: as in :func:`eclip.catalog.load_catalog`.
        image_col: column of image paths (relative to ``image_root``) or http(s) URLs.
        image_root: the folder image paths are relative to, and may not leave (default: the
            catalog file's folder).
        allow_outside_root: follow image paths that leave the catalog's folder.
        device: torch device (``None``: CUDA when available).
        runtime: how a sentence-transformers tower runs (:data:`eclip.encoders.onnx.RUNTIMES`);
            ONNX exports are cached in ``<out>/runtime``.
        overwrite: replace embeddings of another model or settings in ``out``.
        url_timeout_s, url_max_bytes: limits of each image download.
        settings: shard size, fusion weight, pHash, batch size, workers.
    """

    model: str = DEFAULT_MODEL
    id_col: str = "id"
    text_cols: list[str] | None = None
    sep: str | None = None
    encoding: str | None = None
    image_col: str | None = None
    image_root: Path | None = None
    allow_outside_root: bool = False
    device: str | None = None
    runtime: str = "auto"
    overwrite: bool = False
    url_timeout_s: float = URL_TIMEOUT_S
    url_max_bytes: int = MAX_IMAGE_BYTES
    settings: EmbedSettings = field(default_factory=EmbedSettings)


def embed(catalog: str | Path, out: str | Path, cfg: EmbedConfig | None = None) -> dict[str, Any]:
    """Embed a catalog's titles (and images) into a resumable, sharded embeddings directory.

    See :mod:`eclip.encoders.embed` for the layout, the fusion rule and how resuming and
    ``torchrun`` work.

    Returns:
        The manifest.

    Raises:
        CatalogError: bad catalog or columns. ModelError: bad model spec or weights.
        RunDirError: ``out`` holds embeddings of another model (without ``overwrite``).
    """
    cfg = cfg or EmbedConfig()
    out = Path(out)
    cat = load_catalog(catalog, cfg.id_col, cfg.text_cols, cfg.image_col, cfg.sep, cfg.encoding)
    if cat.empty_rows and cat.images is None:
        console.print(f"[yellow]{len(cat.empty_rows)} row(s) have empty text; they are embedded but flagged has_text = false.[/]")
    dist = Dist.from_env()
    device = cfg.device
    if device is None and dist.world > 1:
        import torch

        device = f"cuda:{int(os.environ.get('LOCAL_RANK', dist.rank))}" if torch.cuda.is_available() else "cpu"
    encoder = load_encoder(cfg.model, device=device, batch_size=cfg.settings.batch_size, runtime=cfg.runtime, cache_dir=out / "runtime")
    images = None
    if cat.images is not None:
        root = Path(cfg.image_root) if cfg.image_root else cat.root
        if not root.is_dir():
            raise CatalogError(f"--image-root {root}: no such folder.")
        images = ImageSettings(root=root, cache_dir=out / "image_cache", allow_outside_root=cfg.allow_outside_root, max_bytes=cfg.url_max_bytes, timeout_s=cfg.url_timeout_s)
    # torchrun ranks write one directory together; a single process locks it against others
    with contextlib.nullcontext() if dist.world > 1 else locked(out):
        return embed_catalog(encoder, cat, out, cfg.settings, images, cfg.overwrite, dist)
