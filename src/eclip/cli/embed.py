"""``eclip embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from eclip.cli.options import (
    AllowOutsideOpt,
    AllowPrivateOpt,
    BatchSizeOpt,
    CatalogArg,
    EncodingOpt,
    IdColOpt,
    ImageColOpt,
    ImageRootOpt,
    ModelOpt,
    RayOpt,
    RayWorkersOpt,
    RuntimeOpt,
    SepOpt,
    TextColsOpt,
    WorkersOpt,
    default_out,
    finite,
    ray_runner,
    source_options,
)
from eclip.progress import console


def embed(
    catalog: CatalogArg,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Embeddings directory (sharded .npy + manifest.json); default runs/embeddings/FOLDER-NAME of the catalog. A rerun resumes.",
            metavar="DIR",
            rich_help_panel="Output",
        ),
    ] = None,
    model: ModelOpt = "minilm",
    runtime: RuntimeOpt = "auto",
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    sep: SepOpt = None,
    encoding: EncodingOpt = None,
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
    allow_private_urls: AllowPrivateOpt = False,
    device: Annotated[
        Optional[str],
        typer.Option(
            help="torch device, e.g. cpu, cuda, cuda:1. Default: CUDA when available (bf16 autocast).",
            metavar="DEV",
            rich_help_panel="Model",
        ),
    ] = None,
    batch_size: BatchSizeOpt = 64,
    workers: WorkersOpt = -1,
    shard_rows: Annotated[
        int,
        typer.Option(
            min=1,
            help="Rows per shard, the unit of resuming and of work per torchrun rank.",
            metavar="N",
            rich_help_panel="Performance",
        ),
    ] = 4096,
    image_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            callback=finite,
            help="w in fused = normalize(w*image + (1-w)*text).",
            metavar="W",
            rich_help_panel="Images",
        ),
    ] = 0.5,
    phash: Annotated[
        bool,
        typer.Option(
            "--phash/--no-phash",
            help="Store the 64-bit perceptual hash of every image.",
            metavar="",
            rich_help_panel="Output",
        ),
    ] = True,
    url_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            callback=finite,
            help="Seconds before an image download is abandoned.",
            metavar="SEC",
            rich_help_panel="Images",
        ),
    ] = 10.0,
    url_max_mb: Annotated[
        float,
        typer.Option(
            min=0.01,
            callback=finite,
            help="Largest image download, MiB.",
            metavar="MIB",
            rich_help_panel="Images",
        ),
    ] = 20.0,
    max_image_pixels: Annotated[
        int,
        typer.Option(
            min=1,
            help="Larger images are refused (too_large), not decoded.",
            metavar="N",
            rich_help_panel="Images",
        ),
    ] = 40_000_000,
    url_retries: Annotated[
        int,
        typer.Option(
            min=0,
            help="Retries (with backoff) of a download that timed out or got HTTP 429/5xx; a rerun retries what still failed.",
            metavar="N",
            rich_help_panel="Images",
        ),
    ] = 2,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace embeddings of another model or settings in OUT.",
            metavar="",
            rich_help_panel="Output",
        ),
    ] = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Embed titles and images into an embeddings directory.

    Sharded and resumable (rerun the same command after a kill), and torchrun- and Ray-ready.
    """
    from eclip import api
    from eclip.encoders import EmbedSettings

    cfg = api.EmbedConfig(
        **source_options(
            id_col, text_cols, image_col, image_root, allow_outside_root, model, sep, encoding, allow_private_urls
        ),
        device=device,
        runtime=runtime,
        overwrite=overwrite,
        url_timeout_s=url_timeout,
        url_max_bytes=int(url_max_mb * 2**20),
        url_retries=url_retries,
        max_image_pixels=max_image_pixels,
        settings=EmbedSettings(
            shard_rows=shard_rows, image_weight=image_weight, phash=phash, batch_size=batch_size, workers=workers
        ),
        ray=ray_runner(ray, ray_workers),
    )
    out = out or default_out("embeddings", catalog)
    manifest = api.embed(catalog, out, cfg)
    if "failures" not in manifest:  # a non-zero torchrun rank
        return
    table = Table(title=f"eclip embed: {catalog}", show_header=False)
    table.add_row("rows", f"{manifest['rows']:,} in {manifest['shards']} shard(s)")
    table.add_row("embedded / reused", f"{manifest['embedded_rows']:,} / {manifest['reused_rows']:,}")
    table.add_row(
        "model", f"{manifest['model'].get('name')} ({manifest['dim']}-d, runtime {manifest.get('runtime', 'torch')})"
    )
    table.add_row("arrays", ", ".join(manifest["arrays"]))
    if cfg.image_col:
        fails = sum(manifest["failures"].values())
        detail = ", ".join(f"{k} {v}" for k, v in manifest["failures"].items())
        table.add_row("image failures", f"{fails:,}" + (f" ({detail}); see {out}/failures.parquet" if fails else ""))
    if manifest.get("rows_per_s"):
        table.add_row("speed", f"{manifest['rows_per_s']:,} rows/s")
    table.add_row("written", f"{out}/manifest.json, {out}/shards/")
    console.print(table)
