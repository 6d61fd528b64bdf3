"""The ``embed`` job: a catalog's titles (and images) into a resumable embeddings directory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from eclip.catalog import Catalog, load_catalog
from eclip.catalog.images import DEFAULT_MAX_PIXELS, MAX_IMAGE_BYTES, URL_RETRIES, URL_TIMEOUT_S, ImageSettings
from eclip.checks import Runtime, check_choice, check_range
from eclip.distributed import RayRunner
from eclip.distributed.ray_runner import named_work
from eclip.encoders import DEFAULT_MODEL, Dist, EmbedSettings, embed_catalog, embed_shard, load_encoder, shard_bounds
from eclip.errors import CatalogError, EclipError
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
        allow_private_urls: fetch image URLs whose host is a loopback, private or link-local
            address (refused by default: :func:`eclip.catalog.images.check_public`).
        device: torch device (``None``: CUDA when available).
        runtime: how a sentence-transformers tower runs (:data:`eclip.encoders.onnx.RUNTIMES`);
            ONNX exports are cached in ``<out>/runtime``.
        overwrite: replace embeddings of another model or settings in ``out``.
        url_timeout_s, url_max_bytes: limits of each image download; url_retries: retries
            (with backoff) after a timeout, a refused connection or HTTP 429 / 5xx;
            max_image_pixels: larger images are refused (``too_large``) before decoding.
        settings: shard size, fusion weight, pHash, batch size, workers.
        ray: run the shards on a Ray actor pool (``--ray``) instead of in this process.
    """

    model: str = DEFAULT_MODEL
    id_col: str = "id"
    text_cols: list[str] | None = None
    sep: str | None = None
    encoding: str | None = None
    image_col: str | None = None
    image_root: Path | None = None
    allow_outside_root: bool = False
    allow_private_urls: bool = False
    device: str | None = None
    runtime: Runtime = "auto"
    overwrite: bool = False
    url_timeout_s: float = URL_TIMEOUT_S
    url_max_bytes: int = MAX_IMAGE_BYTES
    url_retries: int = URL_RETRIES
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    settings: EmbedSettings = field(default_factory=EmbedSettings)
    ray: RayRunner | None = None

    def __post_init__(self) -> None:
        check_choice(self, "runtime", Runtime)
        check_range(self, "url_timeout_s", 0, lo_open=True)
        check_range(self, "url_max_bytes", 1)
        check_range(self, "url_retries", 0)
        check_range(self, "max_image_pixels", 1)


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
        console.print(
            f"[yellow]{len(cat.empty_rows)} row(s) have empty text; they are embedded but flagged has_text = false.[/]"
        )
    dist = Dist.from_env()
    device = dist.device(cfg.device)
    encoder = load_encoder(
        cfg.model, device=device, batch_size=cfg.settings.batch_size, runtime=cfg.runtime, cache_dir=out / "runtime"
    )
    images = None
    if cat.images is not None:
        root = Path(cfg.image_root) if cfg.image_root else cat.root
        if not root.is_dir():
            raise CatalogError(f"--image-root {root}: no such folder.")
        images = ImageSettings(
            root=root,
            cache_dir=out / "image_cache",
            allow_outside_root=cfg.allow_outside_root,
            max_bytes=cfg.url_max_bytes,
            timeout_s=cfg.url_timeout_s,
            retries=cfg.url_retries,
            allow_private_urls=cfg.allow_private_urls,
            max_pixels=cfg.max_image_pixels,
        )
    runner = executor = None
    if cfg.ray is not None:
        if dist.world > 1:
            raise EclipError("--ray and torchrun are two ways to spread one job; use one of them.")
        executor = {"kind": "ray", **cfg.ray.describe()}
        runner = _ray_shards(cfg, cat, out, encoder, images, executor)
    # torchrun ranks write one directory together; a single process locks it against others
    with contextlib.nullcontext() if dist.world > 1 else locked(out):
        return embed_catalog(encoder, cat, out, cfg.settings, images, cfg.overwrite, dist, runner, executor)


class _EmbedActor:
    """A Ray actor of ``eclip embed --ray``: loads the model once, then embeds and writes the
    shards it is handed (:func:`eclip.encoders.embed_shard`), skipping any already written."""

    def __init__(
        self,
        model: str,
        device: str | None,
        runtime: str,
        runtime_dir: str,
        out: str,
        settings: EmbedSettings,
        images: ImageSettings | None,
        catalog: dict,
    ) -> None:
        import ray

        self.encoder = load_encoder(
            model, device=device, batch_size=settings.batch_size, runtime=runtime, cache_dir=Path(runtime_dir)
        )
        self.out, self.settings, self.images, self.catalog = Path(out), settings, images, catalog
        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)  # its process died once

    def __call__(self, batch: Any) -> dict[str, list]:
        item = batch.to_pylist()[0]
        i, start, ids, texts = item["shard"], item["start"], item["ids"], item["texts"]
        part = Catalog(
            path=Path(self.catalog["path"]),
            table=pl.DataFrame({"id": ids}, schema={"id": pl.String}),
            id_col=self.catalog["id_col"],
            text_cols=tuple(self.catalog["text_cols"]),
            ids=ids,
            texts=texts,
            empty_rows=[j for j, t in enumerate(texts) if not t],
            image_col=self.catalog["image_col"],
            images=item["images"] if self.catalog["image_col"] else None,
        )
        with named_work(f"shard {i} (rows {start + 1:,}-{start + len(ids):,})"):
            embedded = embed_shard(self.encoder, part, self.out, self.settings, self.images, i, item["key"], start)
        return {"shard": [i], "rows": [len(ids)], "embedded": [embedded], "restarted": [self.restarted]}


def _ray_shards(
    cfg: EmbedConfig, cat: Catalog, out: Path, encoder: Any, images: ImageSettings | None, executor: dict[str, Any]
) -> Any:
    """The ``runner`` of :func:`eclip.encoders.embed_catalog` for ``--ray``: the unfinished
    shards, each with its own rows, through a Ray Data actor pool of :class:`_EmbedActor`.
    ``executor`` (the manifest's) gains ``shards_on_restarted_actors``: shards finished by
    an actor whose process had died and been restarted."""
    plan = shard_bounds(len(cat), cfg.settings.shard_rows)
    meta = {"path": str(cat.path), "id_col": cat.id_col, "text_cols": list(cat.text_cols), "image_col": cat.image_col}

    def run(todo: list[int], keys: dict[int, str]) -> int:
        items = [
            {
                "shard": i,
                "start": plan[i][0],
                "key": keys[i],
                "ids": cat.ids[plan[i][0] : plan[i][1]],
                "texts": cat.texts[plan[i][0] : plan[i][1]],
                "images": cat.images[plan[i][0] : plan[i][1]] if cat.images is not None else [],
            }
            for i in todo
        ]
        sizes = [plan[i][1] - plan[i][0] for i in todo]
        ctor = {
            "model": cfg.model,
            "device": cfg.device,
            "runtime": cfg.runtime,
            "runtime_dir": str(out / "runtime"),
            "out": str(out),
            "settings": cfg.settings,
            "images": images,
            "catalog": meta,
        }
        assert cfg.ray is not None  # _ray_shards is used only with --ray
        rows = cfg.ray.map_actors(_EmbedActor, items, sizes, f"embedding {sum(sizes):,} rows ({encoder.name})", ctor)
        executor["shards_on_restarted_actors"] = sum(bool(r["restarted"]) for r in rows)
        return sum(sizes)

    return run
