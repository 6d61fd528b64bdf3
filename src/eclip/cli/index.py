"""``eclip index build | merge | add | info | query``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from eclip.cli.options import (
    AllowOutsideOpt,
    IdColOpt,
    ImageColOpt,
    ImageRootOpt,
    ModelOpt,
    RayOpt,
    RayWorkersOpt,
    TextColsOpt,
    finite,
    neighbours_opt,
    ray_runner,
    split_cols,
)
from eclip.progress import console

index_app = typer.Typer(
    help="FAISS index directories: build, merge, add, info, query.\n\n"
    "Indexes are exact (Flat) for small sets, else IVF-PQ tuned to a recall target, and sharded for large catalogs.",
    no_args_is_help=True,
)


def index_build(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="Embeddings directory (`eclip embed`, or a dedupe run's embeddings/), or a catalog to embed.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Index directory to write.", metavar="DIR", rich_help_panel="Output")
    ],
    model: ModelOpt = "minilm",
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    vectors: Annotated[
        str, typer.Option(help="The vectors indexed: text, image or fused.", metavar="KIND", rich_help_panel="Index")
    ] = "text",
    factory: Annotated[
        Optional[str],
        typer.Option(
            help="faiss factory, e.g. 'IVF4096,PQ48x8,Refine(SQ8)'; default: chosen from n, d and --max-memory.",
            metavar="STR",
            rich_help_panel="Index",
        ),
    ] = None,
    max_memory: Annotated[
        Optional[float],
        typer.Option(callback=finite, help="Memory budget of the index, GiB.", metavar="GIB", rich_help_panel="Index"),
    ] = None,
    target_recall: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            callback=finite,
            help="recall@k against exact search that nprobe tuning must reach.",
            metavar="R",
            rich_help_panel="Index",
        ),
    ] = 0.95,
    k: Annotated[
        int,
        typer.Option(
            "--recall-k", "-k", "--k", min=1, help="k of the recall target.", metavar="K", rich_help_panel="Index"
        ),
    ] = 10,
    opq: Annotated[
        bool,
        typer.Option(
            "--opq",
            help="Rotate with OPQ before IVF-PQ (helps PQ without a refine store; slower to train).",
            metavar="",
            rich_help_panel="Index",
        ),
    ] = False,
    flat_max: Annotated[
        int,
        typer.Option(
            min=0, help="Below this many rows the index is exact (Flat).", metavar="N", rich_help_panel="Index"
        ),
    ] = 200_000,
    shard: Annotated[
        Optional[str],
        typer.Option(
            help="i/N: add only slice i of N to the shared trained index; then `eclip index merge`.",
            metavar="I/N",
            rich_help_panel="Index",
        ),
    ] = None,
    groups: Annotated[
        Optional[Path],
        typer.Option(
            help="groups.parquet of a dedupe run over these rows, kept for `dedupe --against`.",
            metavar="FILE",
            rich_help_panel="Output",
        ),
    ] = None,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Build an index over embeddings, tuned to a recall target.

    The index is built over an embeddings directory (or a catalog, embedded first), nprobe is tuned to the recall target, and it is saved.

    A rerun after a kill reuses the trained index; a finished build or shard is not redone.
    """
    from eclip import api

    ecfg = api.EmbedConfig(
        model=model, id_col=id_col, text_cols=split_cols(text_cols), image_col=image_col, image_root=image_root
    )
    m = api.index_build(
        source,
        out,
        vectors,
        factory,
        int(max_memory * 2**30) if max_memory else None,
        target_recall,
        k,
        opq=opq,
        flat_max=flat_max,
        shard=shard,
        groups=groups,
        embed_cfg=ecfg,
        ray=ray_runner(ray, ray_workers),
    )
    console.print_json(data=m)


def index_merge(
    index: Annotated[
        Path, typer.Argument(metavar="INDEX", help="Index directory whose shards/ were built with --shard i/N.")
    ],
    embeddings: Annotated[
        Optional[Path],
        typer.Option(help="The embeddings the shards were built from (default: as recorded).", metavar="DIR"),
    ] = None,
    target_recall: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, callback=finite, help="The recall@k nprobe is tuned to.", metavar="R"),
    ] = 0.95,
    k: Annotated[int, typer.Option("--recall-k", "-k", "--k", min=1, help="k of the recall target.", metavar="K")] = 10,
    groups: Annotated[
        Optional[Path], typer.Option(help="groups.parquet to store beside the index.", metavar="FILE")
    ] = None,
) -> None:
    """Merge a sharded build's shards into one index, then tune it.

    The merged index equals a single build; nprobe is tuned again.
    """
    from eclip import api

    console.print_json(data=api.index_merge(index, embeddings, target_recall, k, groups))


def index_add(
    index: Annotated[Path, typer.Argument(metavar="INDEX", help="Index directory.")],
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="New listings: a catalog file, or an embeddings directory made with the index's model.",
        ),
    ],
    groups: Annotated[
        Optional[Path],
        typer.Option(
            help="groups.parquet of `eclip dedupe NEW --against INDEX`, to keep the new rows' groups.", metavar="FILE"
        ),
    ] = None,
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
) -> None:
    """Append new listings to an index without retraining it.

    Ids already in the index are skipped.
    """
    from eclip import api

    columns = api.CatalogSource(
        id_col=id_col,
        text_cols=split_cols(text_cols),
        image_col=image_col,
        image_root=image_root,
        allow_outside_root=allow_outside_root,
    )
    m = api.index_add(index, source, groups, columns=columns)
    last = m["adds"][-1]
    console.print(
        f"{index}: added {last['rows']:,} rows ({last['skipped_known_ids']:,} already indexed), {m['n']:,} in all."
    )


def index_info(index: Annotated[Path, typer.Argument(metavar="INDEX", help="Index directory.")]) -> None:
    """Print an index directory's manifest."""
    from eclip.index.store import open_index_dir

    console.print_json(data=open_index_dir(index).manifest)


def index_query(
    index: Annotated[Path, typer.Argument(metavar="INDEX", help="Index directory.")],
    text: Annotated[
        Optional[list[str]],
        typer.Option(help="A title to look up; repeatable.", metavar="TITLE", rich_help_panel="Queries"),
    ] = None,
    image: Annotated[
        Optional[list[str]],
        typer.Option(
            help="An image file or http(s) URL to look up; repeatable.", metavar="FILE", rich_help_panel="Queries"
        ),
    ] = None,
    catalog: Annotated[
        Optional[Path],
        typer.Option(help="Look up every row of this catalog.", metavar="FILE", rich_help_panel="Queries"),
    ] = None,
    k: Annotated[int, neighbours_opt("Neighbours returned per query.")] = 10,
    mmap: Annotated[bool, typer.Option("--mmap", help="Memory-map the index, not read it.", metavar="")] = False,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Write the neighbours here (.parquet or .csv) instead of printing.", metavar="FILE"),
    ] = None,
    id_col: IdColOpt = "id",
    text_cols: TextColsOpt = None,
    image_col: ImageColOpt = None,
    image_root: ImageRootOpt = None,
    allow_outside_root: AllowOutsideOpt = False,
) -> None:
    """Search an index: top-k neighbours of new rows, with scores.

    The rows are embedded with the index's own model (and vectors).
    """
    from eclip import api
    from eclip.rundir import refuse_overwrite, write_csv, write_parquet

    if out is not None:
        refuse_overwrite(out, [catalog])  # before any work
    columns = api.CatalogSource(
        id_col=id_col,
        text_cols=split_cols(text_cols),
        image_col=image_col,
        image_root=image_root,
        allow_outside_root=allow_outside_root,
    )
    res = api.index_query(
        index,
        texts=text,
        images=[str(p) for p in image or []],
        catalog=catalog,
        k=k,
        mmap=mmap,
        columns=columns if catalog is not None else None,
    )
    if out is not None:
        write_csv(res, out, for_people=True) if out.suffix == ".csv" else write_parquet(res, out)
        console.print(f"{len(res):,} neighbours written to {out}")
        return
    table = Table(title=f"eclip index query: {index}")
    for col in res.columns:
        table.add_column(col)
    for row in res.iter_rows():
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


index_app.command("build")(index_build)
index_app.command("merge")(index_merge)
index_app.command("add")(index_add)
index_app.command("info")(index_info)
index_app.command("query")(index_query)
