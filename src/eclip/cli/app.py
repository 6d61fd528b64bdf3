"""Typer commands. Each one parses options, calls :mod:`eclip.api`, and prints a summary.

Any :class:`~eclip.errors.EclipError` is printed as one red line, without a traceback, and
the command exits with status 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import polars as pl
import typer
from rich.table import Table

from eclip.errors import EclipError
from eclip.progress import console

app = typer.Typer(
    name="eclip",
    help="Find the same product across messy e-commerce catalogs: embed titles and images (MiniLM or any "
    "open_clip model, or one trained on your catalog with `eclip train`), search FAISS indexes, and group "
    "the matches. Reads CSV, Parquet and JSONL; writes Parquet plus a JSON manifest.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Options that several commands share, declared once.
CatalogArg = Annotated[Path, typer.Argument(help="Catalog file: .csv, .tsv, .parquet, .jsonl or .ndjson.")]
ModelOpt = Annotated[str, typer.Option(help="Model spec: minilm (bundled, offline), openclip:ARCH[:TAG|:CKPT], hf-hub:ORG/NAME, or a model folder.")]
IdColOpt = Annotated[str, typer.Option(help="Column with a unique id per row.")]
TextColsOpt = Annotated[Optional[str], typer.Option(help="Comma-separated columns joined into the title text. Default: title-like column, then brand/manufacturer.")]
ImageColOpt = Annotated[Optional[str], typer.Option(help="Column of image paths (relative to the catalog file) or http(s) URLs.")]
ImageRootOpt = Annotated[Optional[Path], typer.Option(help="Folder image paths are relative to, and may not leave. Default: the catalog file's folder.")]
AllowOutsideOpt = Annotated[bool, typer.Option("--allow-outside-root", help="Follow image paths that leave the image root.")]
WorkersOpt = Annotated[int, typer.Option(min=-1, help="DataLoader workers decoding images (-1: one per spare core).")]
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="Rows per encoder forward pass.")]


def _source(id_col: str, text_cols: Optional[str], image_col: Optional[str], image_root: Optional[Path], allow_outside_root: bool, model: str) -> dict:
    """The shared catalog options as keyword arguments of :class:`eclip.api.CatalogSource`."""
    return {"id_col": id_col, "text_cols": _split(text_cols), "image_col": image_col, "image_root": image_root, "allow_outside_root": allow_outside_root, "model": model}


def _split(cols: Optional[str]) -> Optional[list[str]]:
    return [c.strip() for c in cols.split(",") if c.strip()] if cols else None


@app.command()
def embed(
    catalog: CatalogArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Embeddings directory (sharded .npy + manifest.json). Rerun the same command to resume.")] = Path("runs/embeddings"),
    model: ModelOpt = "minilm",
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
    device: Annotated[Optional[str], typer.Option(help="torch device, e.g. cpu, cuda, cuda:1. Default: CUDA when available (bf16 autocast).")] = None,
    batch_size: BatchSizeOpt = 64,
    workers: WorkersOpt = -1,
    shard_rows: Annotated[int, typer.Option(min=1, help="Rows per shard, the unit of resuming and of work per torchrun rank.")] = 4096,
    image_weight: Annotated[float, typer.Option(min=0.0, max=1.0, help="w in fused = normalize(w*image + (1-w)*text).")] = 0.5,
    phash: Annotated[bool, typer.Option("--phash/--no-phash", help="Store the 64-bit perceptual hash of every image.")] = True,
    url_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds before an image download is abandoned.")] = 10.0,
    url_max_mb: Annotated[float, typer.Option(min=0.01, help="Largest image download accepted, MiB.")] = 20.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace embeddings of another model or settings in OUT.")] = False,
) -> None:
    """Embed titles and images into a sharded, resumable embeddings directory (torchrun-ready)."""
    from eclip import api
    from eclip.encoders import EmbedSettings

    cfg = api.EmbedConfig(
        model=model,
        id_col=id_col,
        text_cols=_split(text_cols),
        image_col=image_col,
        image_root=image_root,
        allow_outside_root=allow_outside_root,
        device=device,
        overwrite=overwrite,
        url_timeout_s=url_timeout,
        url_max_bytes=int(url_max_mb * 2**20),
        settings=EmbedSettings(shard_rows=shard_rows, image_weight=image_weight, phash=phash, batch_size=batch_size, workers=workers),
    )
    manifest = api.embed(catalog, out, cfg)
    if "failures" not in manifest:  # a non-zero torchrun rank
        return
    table = Table(title=f"eclip embed: {catalog}", show_header=False)
    table.add_row("rows", f"{manifest['rows']:,} in {manifest['shards']} shard(s)")
    table.add_row("embedded / reused", f"{manifest['embedded_rows']:,} / {manifest['reused_rows']:,}")
    table.add_row("model", f"{manifest['model'].get('name')} ({manifest['dim']}-d)")
    table.add_row("arrays", ", ".join(manifest["arrays"]))
    if cfg.image_col:
        fails = sum(manifest["failures"].values())
        detail = ", ".join(f"{k} {v}" for k, v in manifest["failures"].items())
        table.add_row("image failures", f"{fails:,}" + (f" ({detail}); see {out}/failures.parquet" if fails else ""))
    if manifest.get("rows_per_s"):
        table.add_row("speed", f"{manifest['rows_per_s']:,} rows/s")
    table.add_row("written", f"{out}/manifest.json, {out}/shards/")
    console.print(table)


@app.command()
def dedupe(
    catalog: CatalogArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory for groups.parquet, pairs.parquet, manifest.json and caches.")],
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    model: ModelOpt = "minilm",
    embeddings: Annotated[Optional[Path], typer.Option(help="Embeddings directory from `eclip embed` (instead of --model).")] = None,
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
    signals: Annotated[Optional[str], typer.Option(help="Comma-separated signals among text, image, fused, phash. Default: all the embeddings have.")] = None,
    image_threshold: Annotated[float, typer.Option(help="Minimum image-embedding cosine of a match.")] = 0.9,
    fused_threshold: Annotated[float, typer.Option(help="Minimum fused-embedding cosine of a match.")] = 0.85,
    phash_max_distance: Annotated[int, typer.Option(min=0, max=64, help="Largest pHash Hamming distance (bits of 64) of a match.")] = 8,
    workers: WorkersOpt = -1,
    k: Annotated[int, typer.Option(min=1, help="Neighbours per row in the kNN self-join.")] = 10,
    method: Annotated[str, typer.Option(help="Grouping: 'mutual' (reciprocal best match) or 'components' (threshold + connected components).")] = "",
    threshold: Annotated[Optional[float], typer.Option(help="Minimum text score of a match (and of the final score). Default: the calibrated one, else 0.6.")] = None,
    calibration: Annotated[Optional[Path], typer.Option(help="calibration.json from `eclip eval --calibrate`: use its method and threshold.")] = None,
    lexical: Annotated[bool, typer.Option("--lexical/--no-lexical", help="Add TF-IDF char n-gram and model-code signals to the embedding score.")] = True,
    batch_size: BatchSizeOpt = 64,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Embeddings directory to write and reuse. Default: OUT/embeddings.")] = None,
    flat_max: Annotated[int, typer.Option(min=2, help="Below this many rows, search is exact (Flat); above, IVF-PQ with an SQ8 re-ranking store.")] = 200_000,
    against: Annotated[Optional[Path], typer.Option(help="Index directory (`eclip index build`): match only these rows against it and its groups; existing group ids stay.")] = None,
    review: Annotated[Optional[Path], typer.Option(help="Filled-in review.csv from `eclip report`: 'same' rows are kept together (must-link), 'different' rows split out (cannot-link).")] = None,
) -> None:
    """Deduplicate a catalog: every row gets a match group (singletons included).

    With --against INDEX, only the catalog's rows are matched, against the index and its
    groups; then `eclip index add INDEX CATALOG --groups OUT/groups.parquet` appends them.
    """
    from eclip import api
    cfg = api.DedupeConfig(
        id_col=id_col,
        text_cols=_split(text_cols),
        image_col=image_col,
        image_root=image_root,
        allow_outside_root=allow_outside_root,
        model=model,
        embeddings=embeddings,
        signals=tuple(_split(signals) or ()) if signals is not None else None,
        image_threshold=image_threshold,
        fused_threshold=fused_threshold,
        phash_max_distance=phash_max_distance,
        workers=workers,
        k=k,
        lexical=lexical,
        batch_size=batch_size,
        cache_dir=cache_dir,
        flat_max=flat_max,
        review=review,
    )
    if calibration is not None:
        cfg.method, cfg.threshold = api.read_calibration(calibration)
    if method:
        cfg.method = method
    if threshold is not None:
        cfg.threshold = threshold
    if against is not None:
        m = api.dedupe_against(catalog, against, out, cfg)
        c = m["counts"]
        table = Table(title=f"eclip dedupe {catalog} --against {against}", show_header=False)
        table.add_row("rows", f"{c['rows']:,} ({c['already_indexed']:,} already indexed)")
        table.add_row("joined an existing group", f"{c['joined']:,}" + (f" ({c['rows_with_also_matches']:,} also match other groups: see also_matches)" if c["rows_with_also_matches"] else ""))
        table.add_row("new groups (size > 1) / singletons", f"{c['new_group']:,} rows / {c['singleton']:,}")
        table.add_row("method / threshold", f"{m['matching']['method']} / {m['matching']['threshold']}" + (" (with lexical signals)" if m["matching"]["lexical"] else ""))
        table.add_row("time", f"{m['timings_s']['total']:.1f} s")
        table.add_row("written", f"{out}/groups.parquet, pairs.parquet, manifest.json")
        console.print(table)
        return
    manifest = api.dedupe(catalog, out, cfg)
    c = manifest["counts"]
    table = Table(title=f"eclip dedupe: {catalog}", show_header=False)
    table.add_row("rows", f"{c['rows']:,}")
    table.add_row("empty text / unmatchable (kept as singletons)", f"{c['empty_text_rows']:,} / {c['unmatchable_rows']:,}")
    table.add_row("signals", ", ".join(manifest["matching"]["signals"]))
    table.add_row("candidate pairs", f"{c['candidate_pairs']:,}")
    by = ", ".join(f"{k} {v:,}" for k, v in c["matched_pairs_by_signal"].items())
    table.add_row("matched pairs", f"{c['matched_pairs']:,}" + (f" (passing: {by})" if by else ""))
    table.add_row("match groups (size > 1)", f"{c['multi_row_groups']:,} holding {c['rows_in_multi_row_groups']:,} rows")
    table.add_row("method / threshold", f"{cfg.method} / {cfg.threshold}")
    table.add_row("index", ", ".join(f"{k}: {v.get('factory') or v.get('kind')}" for k, v in manifest["index"].items()))
    table.add_row("time", f"{manifest['timings_s']['total']:.1f} s")
    table.add_row("written", f"{out}/groups.parquet, pairs.parquet, manifest.json")
    console.print(table)


@app.command()
def train(
    catalog: CatalogArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: checkpoints, metrics.jsonl, cache, and the trained model in OUT/model.")] = Path("runs/train"),
    image_col: ImageColOpt = "image",
    text_col: Annotated[Optional[str], typer.Option(help="Title column(s), comma-separated. Default: title-like column, then brand.")] = None,
    id_col: IdColOpt = "id",
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
    init: Annotated[str, typer.Option(help="Starting point: minilm (MiniLM text + timm image tower from scratch) or an open_clip spec to fine-tune.")] = "minilm",
    loss: Annotated[str, typer.Option(help="eclip (multi-positive targets for rows of one product) or clip (plain InfoNCE).")] = "eclip",
    group_by: Annotated[str, typer.Option(help="e-CLIP group keys, comma-separated among col, title, phash.")] = "title,phash",
    group_col: Annotated[Optional[str], typer.Option(help="Column whose equal values mark the same product (group source 'col').")] = None,
    zeroshot_col: Annotated[Optional[str], typer.Option(help="Class column for zero-shot accuracy on the validation split, e.g. articleType.")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 8,
    batch_size: Annotated[int, typer.Option(min=2, help="Pairs per micro-batch.")] = 128,
    accum_freq: Annotated[int, typer.Option(min=1, help="Micro-batches per step, one contrastive batch (features cached, recomputed with grad).")] = 1,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    warmup_steps: Annotated[int, typer.Option(min=0)] = 50,
    image_size: Annotated[int, typer.Option(min=16, help="Image resolution of --init minilm's image tower.")] = 64,
    timm_model: Annotated[str, typer.Option(help="timm image tower of --init minilm (from scratch).")] = "resnet18",
    lock_text: Annotated[Optional[bool], typer.Option("--lock-text/--no-lock-text", help="Freeze the text tower, features computed once (LiT). Default: locked for --init minilm.")] = None,
    lock_image: Annotated[bool, typer.Option("--lock-image", help="Freeze the image tower.")] = False,
    image_only: Annotated[bool, typer.Option("--image-only", help="Ignore titles: two augmented views of each image are the positive pair (when titles would leak labels).")] = False,
    grad_checkpointing: Annotated[bool, typer.Option("--grad-checkpointing", help="Recompute activations in backward to save memory.")] = False,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9, help="Share of ids held out for validation (split by id hash).")] = 0.2,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints (plus one per epoch).")] = 100,
    seed: Annotated[int, typer.Option()] = 0,
    workers: WorkersOpt = 0,
    device: Annotated[Optional[str], typer.Option(help="torch device; default CUDA when available (bf16 autocast).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many steps (a budget).")] = None,
    resume: Annotated[Optional[str], typer.Option(help="'latest' or a checkpoint path: continue a killed run.")] = None,
) -> None:
    """Train image and title encoders contrastively on the catalog's own listings (e-CLIP)."""
    from eclip import api
    from eclip.train import TrainConfig

    cfg = TrainConfig(
        init=init, loss=loss, group_by=tuple(_split(group_by) or ()), group_col=group_col, image_size=image_size, timm_model=timm_model,
        lock_text=lock_text, lock_image=lock_image, image_only=image_only, epochs=epochs, batch_size=batch_size, accum_freq=accum_freq, lr=lr,
        warmup_steps=warmup_steps, val_fraction=val_fraction, zeroshot_col=zeroshot_col, checkpoint_every=checkpoint_every,
        seed=seed, grad_checkpointing=grad_checkpointing, workers=workers, device=device, max_steps=max_steps,
    )
    card = api.train(catalog, out, cfg, id_col=id_col, text_cols=_split(text_col), image_col=image_col, image_root=image_root, allow_outside_root=allow_outside_root, resume=resume)
    if not card:
        return
    last = card["eval"][-1] if card["eval"] else {}
    table = Table(title=f"eclip train: {catalog}", show_header=False)
    table.add_row("rows train / val", f"{card['data']['train_rows']:,} / {card['data']['val_rows']:,}")
    table.add_row("loss", f"{card['loss']['variant']} (groups with several rows: {card['data']['groups_with_several_rows']:,})")
    table.add_row("steps / contrastive batch", f"{card['training']['steps']:,} / {card['training']['contrastive_batch']}")
    for k, v in last.items():
        if isinstance(v, float) and k != "zeroshot_classes":
            table.add_row(k, f"{v:.4f}")
    table.add_row("model", f"{out}/model (use --model {out}/model)")
    console.print(table)


index_app = typer.Typer(
    help="FAISS index directories: build (auto-tuned IVF-PQ, sharded), merge, add, info, query.", no_args_is_help=True
)
app.add_typer(index_app, name="index")


@index_app.command("build")
def index_build(
    source: Annotated[Path, typer.Argument(help="Embeddings directory from `eclip embed` (or a dedupe run's embeddings/), or a catalog to embed first.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to write.")],
    model: ModelOpt = "minilm",
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    vectors: Annotated[str, typer.Option(help="Which vectors: text, image or fused.")] = "text",
    factory: Annotated[Optional[str], typer.Option(help="faiss factory string, e.g. 'IVF4096,PQ48x8,Refine(SQ8)'. Default: chosen from n, d and --max-memory.")] = None,
    max_memory: Annotated[Optional[float], typer.Option(help="Memory budget of the index, GiB.")] = None,
    target_recall: Annotated[float, typer.Option(min=0.0, max=1.0, help="recall@k against exact search that nprobe tuning must reach.")] = 0.95,
    k: Annotated[int, typer.Option(min=1, help="k of the recall target.")] = 10,
    opq: Annotated[bool, typer.Option("--opq", help="Rotate with OPQ before IVF-PQ (helps PQ without a refine store; slower to train).")] = False,
    flat_max: Annotated[int, typer.Option(min=0, help="Below this many rows the index is exact (Flat).")] = 200_000,
    shard: Annotated[Optional[str], typer.Option(help="i/N: add only slice i of N to the shared trained index; then `eclip index merge`.")] = None,
    groups: Annotated[Optional[Path], typer.Option(help="groups.parquet of a dedupe run over these rows, kept for `dedupe --against`.")] = None,
) -> None:
    """Build an index over an embeddings directory, tune nprobe to the recall target, and save it.

    A rerun after a kill reuses the trained index; a finished build or shard is not redone.
    """
    from eclip import api

    ecfg = api.EmbedConfig(model=model, id_col=id_col, text_cols=_split(text_cols), image_col=image_col, image_root=image_root)
    m = api.index_build(
        source, out, vectors, factory, int(max_memory * 2**30) if max_memory else None, target_recall, k,
        opq=opq, flat_max=flat_max, shard=shard, groups=groups, embed_cfg=ecfg,
    )
    console.print_json(data=m)


@index_app.command("merge")
def index_merge(
    index: Annotated[Path, typer.Argument(help="Index directory whose shards/ were built with --shard i/N.")],
    embeddings: Annotated[Optional[Path], typer.Option(help="The embeddings the shards were built from (default: as recorded).")] = None,
    target_recall: Annotated[float, typer.Option(min=0.0, max=1.0, help="recall@k that nprobe tuning must reach.")] = 0.95,
    k: Annotated[int, typer.Option(min=1, help="k of the recall target.")] = 10,
    groups: Annotated[Optional[Path], typer.Option(help="groups.parquet to keep with the index.")] = None,
) -> None:
    """Merge the shards of a sharded build into one index (equal to a single build), then tune nprobe."""
    from eclip import api

    console.print_json(data=api.index_merge(index, embeddings, target_recall, k, groups))


@index_app.command("add")
def index_add(
    index: Annotated[Path, typer.Argument(help="Index directory.")],
    source: Annotated[Path, typer.Argument(help="New listings: a catalog file, or an embeddings directory made with the index's model.")],
    groups: Annotated[Optional[Path], typer.Option(help="groups.parquet of `eclip dedupe NEW --against INDEX`, to keep the new rows' groups.")] = None,
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
) -> None:
    """Append new listings without retraining; ids already in the index are skipped."""
    from eclip import api

    m = api.index_add(
        index, source, groups, id_col=id_col, text_cols=_split(text_cols), image_col=image_col, image_root=image_root, allow_outside_root=allow_outside_root
    )
    last = m["adds"][-1]
    console.print(f"{index}: added {last['rows']:,} rows ({last['skipped_known_ids']:,} already indexed), {m['n']:,} in all.")


@index_app.command("info")
def index_info(index: Annotated[Path, typer.Argument(help="Index directory.")]) -> None:
    """Print an index directory's manifest."""
    from eclip.index.store import open_index_dir

    console.print_json(data=open_index_dir(index).manifest)


@index_app.command("query")
def index_query(
    index: Annotated[Path, typer.Argument(help="Index directory.")],
    text: Annotated[Optional[list[str]], typer.Option(help="A title to look up; repeatable.")] = None,
    image: Annotated[Optional[list[Path]], typer.Option(help="An image file to look up; repeatable.")] = None,
    catalog: Annotated[Optional[Path], typer.Option(help="Look up every row of this catalog.")] = None,
    k: Annotated[int, typer.Option(min=1)] = 10,
    mmap: Annotated[bool, typer.Option("--mmap", help="Memory-map the index instead of reading it.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write the neighbours here (.parquet or .csv) instead of printing.")] = None,
) -> None:
    """Top-k neighbours with scores, embedded with the index's own model."""
    from eclip import api
    from eclip.rundir import write_csv, write_parquet

    res = api.index_query(index, texts=text, images=[str(p) for p in image or []], catalog=catalog, k=k, mmap=mmap)
    if out is not None:
        (write_csv if out.suffix == ".csv" else write_parquet)(res, out)
        console.print(f"{len(res):,} neighbours written to {out}")
        return
    table = Table(title=f"eclip index query: {index}")
    for col in res.columns:
        table.add_column(col)
    for row in res.iter_rows():
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


@app.command()
def cluster(
    source: Annotated[Path, typer.Argument(help="Catalog file, or an embeddings directory from `eclip embed`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory for clusters.parquet, cluster_summary.parquet, manifest.json and caches.")],
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    model: ModelOpt = "minilm",
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
    vectors: Annotated[Optional[str], typer.Option(help="Vectors to cluster: text, image or fused. Default: fused with images, else text.")] = None,
    mode: Annotated[str, typer.Option(help="auto, pca (HDBSCAN on PCA-reduced vectors) or knn (HDBSCAN on the sparse kNN distance graph). auto: knn from 5,000 rows (measured by bench/cluster.py).")] = "auto",
    min_cluster_size: Annotated[int, typer.Option(min=2, help="Smallest cluster; smaller groups are noise (-1).")] = 5,
    min_samples: Annotated[Optional[int], typer.Option(min=1, help="Neighbours defining density (core distance). Default: --min-cluster-size.")] = None,
    selection: Annotated[str, typer.Option(help="Cluster selection: eom (excess of mass, fewer larger clusters) or leaf (many fine clusters).")] = "eom",
    epsilon: Annotated[float, typer.Option(min=0.0, help="cluster_selection_epsilon: merge clusters closer than this Euclidean distance between unit vectors.")] = 0.0,
    pca_dim: Annotated[int, typer.Option(min=1, help="Dimensions kept by PCA in pca mode.")] = 32,
    k: Annotated[int, typer.Option(min=1, help="Neighbours per row of the kNN graph in knn mode.")] = 15,
    gold_col: Annotated[Optional[str], typer.Option(help="Gold label column (in the catalog, or in --gold): adds ARI, NMI, B-cubed and the noise fraction.")] = None,
    gold: Annotated[Optional[Path], typer.Option(help="Table with the gold labels (default: the catalog).")] = None,
    gold_id_col: Annotated[Optional[str], typer.Option(help="Id column of --gold (default: the catalog's).")] = None,
    singleton_cluster: Annotated[Optional[list[str]], typer.Option(help="Gold label whose rows are unrelated (a catch-all, e.g. WDC's 2432); repeatable.")] = None,
) -> None:
    """Cluster products with HDBSCAN: clusters.parquet (-1 = noise), per-cluster summary with top terms, metrics with --gold-col."""
    from eclip import api
    from eclip.cluster import HdbscanSettings

    cfg = api.ClusterConfig(
        id_col=id_col,
        text_cols=_split(text_cols),
        image_col=image_col,
        image_root=image_root,
        allow_outside_root=allow_outside_root,
        model=model,
        vectors=vectors,
        hdbscan=HdbscanSettings(min_cluster_size=min_cluster_size, min_samples=min_samples, mode=mode, pca_dim=pca_dim, k=k, selection=selection, epsilon=epsilon),
        gold=gold,
        gold_col=gold_col,
        gold_id_col=gold_id_col,
        singleton_clusters=tuple(singleton_cluster or ()),
    )
    m = api.cluster(source, out, cfg)
    c = m["counts"]
    table = Table(title=f"eclip cluster: {source}", show_header=False)
    table.add_row("rows", f"{c['rows']:,}" + (f" ({c['no_vector_rows']:,} without {m['embeddings']['vectors']} vectors)" if c["no_vector_rows"] else ""))
    table.add_row("mode", f"{m['clustering']['mode']} on {m['embeddings']['vectors']} vectors, min_cluster_size {m['clustering']['min_cluster_size']}")
    table.add_row("clusters", f"{c['clusters']:,} (largest {c['largest_cluster']:,}, median size {c['median_cluster_size']:g})")
    table.add_row("noise rows", f"{c['noise_rows']:,} ({c['noise_rows'] / max(c['rows'], 1):.1%})")
    if m["metrics"]:
        mm = m["metrics"]
        table.add_row("ARI / NMI", f"{mm['ari']:.4f} / {mm['nmi']:.4f} (noise rows as singletons)")
        table.add_row("B-cubed P / R / F1", f"{mm['bcubed_precision']:.4f} / {mm['bcubed_recall']:.4f} / {mm['bcubed_f1']:.4f}")
    table.add_row("time", f"{m['timings_s']['total']:.1f} s (HDBSCAN {m['timings_s']['hdbscan']:.1f} s)")
    table.add_row("written", f"{out}/clusters.parquet, cluster_summary.parquet, manifest.json")
    console.print(table)


SourceArg = Annotated[Path, typer.Argument(help="Catalog file, or an embeddings directory from `eclip embed`.")]
VectorsOpt = Annotated[Optional[str], typer.Option(help="Vectors to score: text, image or fused. Default: fused with images, else text.")]
LogitScaleOpt = Annotated[float, typer.Option(min=0.0, help="Zero-shot softmax sharpness: probabilities = softmax(logit_scale x cosine), as CLIP.")]


@app.command()
def classify(
    source: SourceArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory for predictions.parquet, probe.npz, manifest.json and caches.")],
    labels: Annotated[Optional[Path], typer.Option(help="Zero-shot labels: one per line, or Google product taxonomy paths 'A > B > C' (classified level by level).")] = None,
    train: Annotated[Optional[Path], typer.Option(help="Labelled table (id + --label-col) to fit a logistic-regression probe on; saved as OUT/probe.npz.")] = None,
    label_col: Annotated[Optional[str], typer.Option(help="Class column of --train.")] = None,
    train_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of --train's labelled rows used (random, --seed); the rest stay out for `eclip eval`.")] = 1.0,
    probe: Annotated[Optional[Path], typer.Option(help="A saved probe.npz to apply. With --labels: zero-shot prior x probe.")] = None,
    prior_weight: Annotated[float, typer.Option(min=0.0, max=1.0, help="Weight w of the zero-shot prior: softmax(w log p_zero_shot + (1-w) log p_probe).")] = 0.2,
    min_score: Annotated[Optional[float], typer.Option(help="Below this score a row is 'unknown' (cosine for zero-shot, probability with a probe); in a taxonomy it stops descending.")] = None,
    k: Annotated[int, typer.Option(min=1, help="Top labels kept per row.")] = 5,
    hierarchy: Annotated[str, typer.Option(help="A taxonomy's classification: levels (top-down, level by level) or leaves (one choice among the leaves).")] = "levels",
    vectors: VectorsOpt = None,
    logit_scale: LogitScaleOpt = 100.0,
    template: Annotated[Optional[list[str]], typer.Option(help="Prompt template with {} for the label; repeatable. Default: 5 product templates, ensembled.")] = None,
    probe_c: Annotated[Optional[float], typer.Option(min=0.0, help="Probe's inverse L2 regularisation C. Default: the best of 0.1, 1, 10, 100, 1000 by cross-validated macro-F1.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    model: ModelOpt = "minilm",
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
) -> None:
    """Classify rows into categories: zero-shot from label names (prompt ensembling), a linear probe, or both."""
    from eclip import api

    cfg = api.ClassifyConfig(
        **_source(id_col, text_cols, image_col, image_root, allow_outside_root, model),
        labels=labels, train=train, label_col=label_col, train_fraction=train_fraction, probe=probe, prior_weight=prior_weight,
        vectors=vectors, k=k, min_score=min_score, logit_scale=logit_scale, hierarchy=hierarchy, probe_c=probe_c, seed=seed,
        **({"templates": tuple(template)} if template else {}),
    )
    m = api.classify(source, out, cfg)
    c = m["counts"]
    table = Table(title=f"eclip classify: {source}", show_header=False)
    table.add_row("method", f"{m['method']} on {m['embeddings']['vectors']} vectors of {m['model'].get('name')}")
    if m["labels"]:
        lb = m["labels"]
        table.add_row("labels", f"{lb['labels']:,} ({lb['leaves']:,} leaves, depth {lb['depth']}), {len(lb['templates'])} prompt templates")
    if m["probe"] and m["probe"].get("cv"):
        cv = m["probe"]["cv"]
        if "accuracy" in cv:
            table.add_row("probe CV", f"accuracy {cv['accuracy']:.4f}, macro-F1 {cv['macro_f1']:.4f} (C {cv['C']:g}, {cv['folds']}-fold, {cv['rows']:,} rows, {cv['classes']} classes)")
    table.add_row("rows", f"{c['rows']:,}: {c['predicted']:,} predicted, {c['unknown']:,} unknown, {c['no_vector']:,} without vectors" + (f"; {c['in_train']:,} trained the probe" if c["in_train"] else ""))
    table.add_row("time", f"{m['timings_s']['total']:.1f} s")
    table.add_row("written", f"{out}/predictions.parquet" + (", probe.npz" if "probe" in m["outputs"] else "") + ", manifest.json")
    console.print(table)


@app.command("filter-adult")
def filter_adult(
    source: SourceArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory for flagged.parquet, manifest.json and caches.")],
    threshold: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Flag rows whose adult score reaches this. Default: calibrated with --calibrate, else 0.5.")] = None,
    calibrate: Annotated[Optional[Path], typer.Option(help="Labelled table (id + --label-col) to pick the threshold on.")] = None,
    label_col: Annotated[Optional[str], typer.Option(help="Column of --calibrate saying which rows are adult.")] = None,
    positive: Annotated[Optional[str], typer.Option(help="Value of --label-col meaning adult, e.g. 'Sexual Wellness'. Default: true/1/yes.")] = None,
    target_precision: Annotated[float, typer.Option(min=0.0, max=1.0, help="Calibration picks the lowest threshold reaching this precision.")] = 0.9,
    holdout: Annotated[float, typer.Option(min=0.0, max=0.99, help="Share of the labelled rows kept out of calibration (random, --seed) to measure the threshold on.")] = 0.0,
    fit_probe: Annotated[bool, typer.Option("--fit-probe", help="Few-shot: fit a logistic-regression probe on the --calibrate rows (vectors + zero-shot log-odds); saved as OUT/adult_probe.npz.")] = False,
    probe: Annotated[Optional[Path], typer.Option(help="adult_probe.npz from an earlier --fit-probe run: score with it (and its threshold).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    vectors: VectorsOpt = None,
    logit_scale: LogitScaleOpt = 10.0,
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    model: ModelOpt = "minilm",
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
) -> None:
    """Flag adult and sexual-wellness products (built-in prompts from Google's product taxonomy); calibrate on labelled rows, or fit a few-shot probe."""
    from eclip import api

    cfg = api.AdultFilterConfig(
        **_source(id_col, text_cols, image_col, image_root, allow_outside_root, model),
        vectors=vectors, threshold=threshold, calibrate=calibrate, label_col=label_col, positive=positive, target_precision=target_precision,
        holdout=holdout, seed=seed, fit_probe=fit_probe, probe=probe, logit_scale=logit_scale,
    )
    m = api.filter_adult(source, out, cfg)
    s = m["summary"]
    table = Table(title=f"eclip filter-adult: {source}", show_header=False)
    t = m["threshold"]
    table.add_row("threshold", f"{t['value']:.4f} ({t['source']})")
    table.add_row("flagged", f"{s['flagged']:,} of {s['scored']:,} scored rows ({s['flagged_fraction']:.2%})" + (f"; {s['no_vector']:,} without vectors" if s["no_vector"] else ""))
    if s["flagged_by_concept"]:
        table.add_row("by concept", ", ".join(f"{k_} {v:,}" for k_, v in list(s["flagged_by_concept"].items())[:5]))
    cal = m["calibration"]
    if cal:
        op = cal["on_calibration_rows"]
        table.add_row("calibration", f"{cal['rows']:,} rows ({cal['positives']:,} positive): P {op['precision']:.4f} R {op['recall']:.4f} at {op['threshold']:.4f}")
        if "holdout" in cal:
            h = cal["holdout"]
            at = h["at_calibrated_threshold"]
            table.add_row("held out", f"{h['rows']:,} rows ({h['positives']:,} positive): P {at['precision']:.4f} R {at['recall']:.4f} at the calibrated threshold; PR-AUC {h['pr_auc']:.4f}")
            if "zero_shot" in h:
                table.add_row("held out, zero-shot", f"PR-AUC {h['zero_shot']['pr_auc']:.4f}")
    if m["probe"]:
        table.add_row("probe", f"{m['probe'].get('saved') or m['probe'].get('loaded')}" + (f" (C {m['probe']['cv']['C']:g}, CV macro-F1 {m['probe']['cv'].get('macro_f1', float('nan')):.4f})" if m["probe"].get("cv") else ""))
    table.add_row("written", f"{out}/flagged.parquet, manifest.json")
    console.print(table)


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run directory of `eclip dedupe` or `eclip cluster`.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML file to write. Default: RUN/report.html.")] = None,
    review_out: Annotated[Optional[Path], typer.Option(help="Review CSV to write (group_id, id, decision, title). Default: RUN/review.csv.")] = None,
    gold: Annotated[Optional[Path], typer.Option(help="Gold labels (pairs file or table) for precision/recall against the threshold. A labelled cluster run reuses its own.")] = None,
    gold_col: Annotated[Optional[str], typer.Option(help="Cluster-id column of --gold.")] = None,
    gold_id_col: Annotated[Optional[str], typer.Option(help="Id column of --gold (default: the catalog's).")] = None,
    singleton_cluster: Annotated[Optional[list[str]], typer.Option(help="Gold label whose rows are unrelated (a catch-all); repeatable.")] = None,
    image_root: ImageRootOpt = None,
    max_groups: Annotated[int, typer.Option(min=1, help="Groups or clusters listed, largest first.")] = 10_000,
    max_thumbnails: Annotated[int, typer.Option(min=0, help="Images embedded as thumbnails (about 3 KB each).")] = 5_000,
) -> None:
    """Write a self-contained HTML report (galleries with thumbnails, histograms, precision/recall) and a review CSV."""
    from eclip.report import write_report

    r = write_report(
        run,
        out,
        review_out,
        gold=gold,
        gold_col=gold_col,
        gold_id_col=gold_id_col,
        singleton_clusters=tuple(singleton_cluster or ()),
        image_root=image_root,
        max_groups=max_groups,
        max_thumbnails=max_thumbnails,
    )
    console.print(f"wrote {r['html']} ({r['bytes'] / 2**20:.1f} MiB: {r['groups']:,} groups, {r['thumbnails']:,} thumbnails) and {r['review']}")


@app.command("eval")
def eval_(
    groups: Annotated[Path, typer.Argument(help="groups.parquet (eclip dedupe), predictions.parquet (eclip classify) or flagged.parquet (eclip filter-adult).")],
    gold: Annotated[Path, typer.Option(help="Gold labels: a pairs file (id_a,id_b) or a table with an id and a cluster or class column.")],
    gold_col: Annotated[Optional[str], typer.Option(help="Cluster-id or class column of the gold table (groups: default cluster_id when present).")] = None,
    gold_id_col: Annotated[str, typer.Option(help="Id column of the gold table.")] = "id",
    singleton_cluster: Annotated[Optional[list[str]], typer.Option(help="Gold cluster id whose rows are unrelated (a catch-all); repeatable.")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Pick the threshold that maximises F1 (or meets --target-precision) and write calibration.json.")] = False,
    target_precision: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="With --calibrate: the lowest threshold reaching this pairwise precision.")] = None,
    calibration_out: Annotated[Optional[Path], typer.Option(help="Where to write calibration.json (default: beside the groups).")] = None,
    positive: Annotated[Optional[str], typer.Option(help="flagged.parquet: the --gold-col value meaning adult (default: true/1/yes).")] = None,
    at_precision: Annotated[float, typer.Option(min=0.0, max=1.0, help="flagged.parquet: report recall at this precision.")] = 0.9,
) -> None:
    """Score a run against gold labels. Groups: pairwise and B-cubed P/R/F1, ARI, NMI, blocking recall@k. Predictions: accuracy, macro-F1, confusions. Flags: PR-AUC, recall at a precision."""
    from eclip import api

    if groups.exists() and not {"id", "group_id"} <= set(pl.read_parquet_schema(groups)):
        _eval_labels(api.evaluate_predictions(groups, gold, gold_id_col=gold_id_col, gold_col=gold_col, positive=positive, precision_target=at_precision), at_precision)
        return

    result = api.evaluate(
        groups,
        gold,
        gold_id_col=gold_id_col,
        gold_col=gold_col,
        singleton_clusters=tuple(singleton_cluster or ()),
        do_calibrate=calibrate,
        target_precision=target_precision,
        calibration_out=calibration_out,
    )
    m = result["metrics"]
    table = Table(title=f"eclip eval: {groups}")
    table.add_column("metric")
    table.add_column("precision", justify="right")
    table.add_column("recall", justify="right")
    table.add_column("F1", justify="right")
    table.add_row("pairwise", f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}")
    table.add_row("B-cubed", f"{m['bcubed_precision']:.4f}", f"{m['bcubed_recall']:.4f}", f"{m['bcubed_f1']:.4f}")
    console.print(table)
    console.print(f"ARI {m['ari']:.4f}   NMI {m['nmi']:.4f}   predicted pairs {m['predicted_pairs']:,}   gold pairs {m['gold_pairs']:,}   true pairs {m['true_pairs']:,}")
    if "blocking" in result:
        console.print("blocking " + "   ".join(f"{k} {v:.4f}" for k, v in result["blocking"].items()))
    if "calibration" in result:
        c = result["calibration"]
        console.print(
            f"calibrated ({c['objective']}): method {c['method']}, threshold {c['threshold']} -> "
            f"P {c['precision']:.4f} R {c['recall']:.4f} F1 {c['f1']:.4f}; written to {c['written_to']}"
        )


def _eval_labels(result: dict, at_precision: float) -> None:
    m = result["metrics"]
    table = Table(title=f"eclip eval: {result['file']}", show_header=False)
    if result["task"] == "filter":
        op = m["operating_point"]
        table.add_row("labelled rows", f"{m['rows']:,} ({m['positives']:,} positive = {result['positive'] or 'true'})")
        table.add_row("PR-AUC / ROC-AUC", f"{m['pr_auc']:.4f} / {m['roc_auc']:.4f}")
        table.add_row(f"recall at precision {at_precision:g}", f"{m[f'recall_at_precision_{at_precision:g}']:.4f} (threshold {op['threshold']:.4f}, oracle on these rows)")
        fw = m["flags_as_written"]
        table.add_row("flags as written", f"{fw['flagged']:,} flagged: precision {fw['precision']:.4f}, recall {fw['recall']:.4f}")
    else:
        table.add_row("labelled rows", f"{m['rows']:,} ({m['classes']} classes)" + (f"; {result['excluded_training_rows']:,} probe training rows left out" if result["excluded_training_rows"] else ""))
        table.add_row("accuracy / macro-F1", f"{m['accuracy']:.4f} / {m['macro_f1']:.4f} (weighted F1 {m['weighted_f1']:.4f})")
        table.add_row("coverage", f"{m['coverage']:.2%} predicted, accuracy on those {m['accuracy_on_predicted'] if m['accuracy_on_predicted'] is not None else 0:.4f}")
        table.add_row("top confusions", "; ".join(f"{c['gold']} -> {c['predicted']} ({c['rows']})" for c in m["top_confusions"][:5]) or "none")
        table.add_row("worst classes", "; ".join(f"{c['class']} F1 {c['f1']:.2f} (n={c['support']})" for c in m["worst_classes"][:5]))
    console.print(table)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # eclip draws its own progress bars
    try:
        app()
    except EclipError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
