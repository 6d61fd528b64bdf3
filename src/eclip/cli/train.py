"""``eclip train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from eclip.cli.options import (
    AllowOutsideOpt,
    CatalogArg,
    IdColOpt,
    ImageColOpt,
    ImageRootOpt,
    WorkersOpt,
    default_out,
    finite,
    split_cols,
)
from eclip.progress import console


def train(
    catalog: CatalogArg,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Run directory: checkpoints, metrics.jsonl, cache, and the trained model in OUT/model; default runs/train/FOLDER-NAME of the catalog.",
            metavar="DIR",
            rich_help_panel="Output",
        ),
    ] = None,
    image_col: ImageColOpt = "image",
    text_cols: Annotated[
        Optional[list[str]],
        typer.Option(
            "--text-cols",
            "--text-col",
            help="Columns joined into the title text (repeat, or separate by commas; --text-col: the old name). Default: title-like column, then brand.",
            metavar="COLS",
        ),
    ] = None,
    id_col: IdColOpt = "id",
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
    init: Annotated[
        str,
        typer.Option(
            help="Starting point: minilm (MiniLM text + timm image tower from scratch) or an open_clip spec to fine-tune.",
            metavar="SPEC",
            rich_help_panel="Model",
        ),
    ] = "minilm",
    loss: Annotated[
        str,
        typer.Option(
            help="eclip (multi-positive targets for rows of one product) or clip (plain InfoNCE).",
            metavar="NAME",
            rich_help_panel="Loss",
        ),
    ] = "eclip",
    group_by: Annotated[
        list[str],
        typer.Option(
            help="e-CLIP group keys among col, title, phash (repeat, or separate by commas).",
            metavar="KEYS",
            rich_help_panel="Loss",
        ),
    ] = ["title,phash"],
    group_col: Annotated[
        Optional[str],
        typer.Option(
            help="Column whose equal values mark the same product (group source 'col').",
            metavar="COL",
            rich_help_panel="Loss",
        ),
    ] = None,
    zeroshot_col: Annotated[
        Optional[str],
        typer.Option(
            help="Class column (e.g. articleType) for zero-shot accuracy on held-out rows.",
            metavar="COL",
            rich_help_panel="Validation",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, metavar="N", rich_help_panel="Schedule")] = 8,
    batch_size: Annotated[
        int, typer.Option(min=2, help="Pairs per micro-batch.", metavar="N", rich_help_panel="Schedule")
    ] = 128,
    accum_freq: Annotated[
        int,
        typer.Option(
            min=1,
            help="Micro-batches per step of one contrastive batch (features cached, then recomputed with grad).",
            metavar="N",
            rich_help_panel="Schedule",
        ),
    ] = 1,
    lr: Annotated[float, typer.Option(min=0.0, callback=finite, metavar="LR", rich_help_panel="Schedule")] = 1e-3,
    warmup_steps: Annotated[int, typer.Option(min=0, metavar="N", rich_help_panel="Schedule")] = 50,
    image_size: Annotated[
        int,
        typer.Option(
            min=16, help="Image resolution of --init minilm's image tower.", metavar="PX", rich_help_panel="Model"
        ),
    ] = 64,
    timm_model: Annotated[
        str,
        typer.Option(help="timm image tower of --init minilm (from scratch).", metavar="NAME", rich_help_panel="Model"),
    ] = "resnet18",
    lock_text: Annotated[
        Optional[bool],
        typer.Option(
            "--lock-text/--no-lock-text",
            help="Freeze the text tower, its features computed once (LiT); default with --init minilm.",
            metavar="",
            rich_help_panel="Model",
        ),
    ] = None,
    lock_image: Annotated[
        bool, typer.Option("--lock-image", help="Freeze the image tower.", metavar="", rich_help_panel="Model")
    ] = False,
    image_only: Annotated[
        bool,
        typer.Option(
            "--image-only",
            help="Ignore titles: two augmented views of an image are the positive pair (when titles leak labels).",
            metavar="",
            rich_help_panel="Loss",
        ),
    ] = False,
    grad_checkpointing: Annotated[
        bool,
        typer.Option(
            "--grad-checkpointing",
            help="Recompute activations in backward to save memory.",
            metavar="",
            rich_help_panel="Performance",
        ),
    ] = False,
    val_fraction: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.9,
            callback=finite,
            help="Share of ids held out for validation (split by id hash).",
            metavar="F",
            rich_help_panel="Validation",
        ),
    ] = 0.2,
    checkpoint_every: Annotated[
        int,
        typer.Option(
            min=1, help="Steps between checkpoints (plus one per epoch).", metavar="N", rich_help_panel="Output"
        ),
    ] = 100,
    seed: Annotated[int, typer.Option(metavar="N", rich_help_panel="Schedule")] = 0,
    workers: WorkersOpt = -1,
    device: Annotated[
        Optional[str],
        typer.Option(
            help="torch device; default CUDA when available (bf16 autocast).",
            metavar="DEV",
            rich_help_panel="Performance",
        ),
    ] = None,
    max_steps: Annotated[
        Optional[int],
        typer.Option(min=1, help="Stop after this many steps (a budget).", metavar="N", rich_help_panel="Schedule"),
    ] = None,
    resume: Annotated[
        Optional[str],
        typer.Option(
            help="'latest' or a checkpoint path: continue a killed run.", metavar="CKPT", rich_help_panel="Output"
        ),
    ] = None,
) -> None:
    """Train image and title encoders on your catalog's listings.

    Contrastive training (e-CLIP) on the catalog's own titles and images; no labels needed.
    """
    from eclip import api
    from eclip.train import TrainConfig

    cfg = TrainConfig(
        init=init,
        loss=loss,
        group_by=tuple(split_cols(group_by) or ()),
        group_col=group_col,
        image_size=image_size,
        timm_model=timm_model,
        lock_text=lock_text,
        lock_image=lock_image,
        image_only=image_only,
        epochs=epochs,
        batch_size=batch_size,
        accum_freq=accum_freq,
        lr=lr,
        warmup_steps=warmup_steps,
        val_fraction=val_fraction,
        zeroshot_col=zeroshot_col,
        checkpoint_every=checkpoint_every,
        seed=seed,
        grad_checkpointing=grad_checkpointing,
        workers=workers,
        device=device,
        max_steps=max_steps,
    )
    out = out or default_out("train", catalog)
    assert image_col is not None  # defaults to "image"; the command line cannot unset it
    card = api.train(
        catalog,
        out,
        cfg,
        id_col=id_col,
        text_cols=split_cols(text_cols),
        image_col=image_col,
        image_root=image_root,
        allow_outside_root=allow_outside_root,
        resume=resume,
    )
    if not card:
        return
    last = card["eval"][-1] if card["eval"] else {}
    table = Table(title=f"eclip train: {catalog}", show_header=False)
    table.add_row("rows train / val", f"{card['data']['train_rows']:,} / {card['data']['val_rows']:,}")
    table.add_row(
        "loss", f"{card['loss']['variant']} (groups with several rows: {card['data']['groups_with_several_rows']:,})"
    )
    table.add_row(
        "steps / contrastive batch", f"{card['training']['steps']:,} / {card['training']['contrastive_batch']}"
    )
    for k, v in last.items():
        if isinstance(v, float) and k != "zeroshot_classes":
            table.add_row(k, f"{v:.4f}")
    table.add_row("model", f"{out}/model (use --model {out}/model)")
    console.print(table)
