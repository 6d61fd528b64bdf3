"""``eclip link``: match one catalog against another."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from eclip.cli.options import BatchSizeOpt, ModelOpt, RuntimeOpt, finite, neighbours_opt, split_cols
from eclip.matcher.assignment import LinkMode
from eclip.progress import console

SIDES = "Sides"


def link(
    left: Annotated[
        Path, typer.Argument(metavar="LEFT", help="Catalog file (e.g. yours): .csv, .tsv, .parquet, .jsonl.")
    ],
    right: Annotated[
        Path, typer.Argument(metavar="RIGHT", help="Catalog file to link to it (a competitor's, a supplier feed).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Run directory for links.parquet, unmatched_*.parquet, manifest.json and caches.",
            metavar="DIR",
        ),
    ],
    left_id_col: Annotated[
        str,
        typer.Option(
            help="LEFT's id column (and RIGHT's unless --right-id-col).", metavar="COL", rich_help_panel=SIDES
        ),
    ] = "id",
    right_id_col: Annotated[
        Optional[str], typer.Option(help="RIGHT's id column.", metavar="COL", rich_help_panel=SIDES)
    ] = None,
    left_text_cols: Annotated[
        Optional[list[str]],
        typer.Option(
            help="LEFT's title columns (repeat, or separate by commas; RIGHT's too unless --right-text-cols). Default: found by name.",
            metavar="COLS",
            rich_help_panel=SIDES,
        ),
    ] = None,
    right_text_cols: Annotated[
        Optional[list[str]], typer.Option(help="RIGHT's title columns.", metavar="COLS", rich_help_panel=SIDES)
    ] = None,
    left_embeddings: Annotated[
        Optional[Path],
        typer.Option(help="Embeddings directory of LEFT (`eclip embed`).", metavar="DIR", rich_help_panel=SIDES),
    ] = None,
    right_embeddings: Annotated[
        Optional[Path],
        typer.Option(help="Embeddings directory of RIGHT; same model as LEFT's.", metavar="DIR", rich_help_panel=SIDES),
    ] = None,
    model: ModelOpt = "minilm",
    runtime: RuntimeOpt = "auto",
    mode: Annotated[
        LinkMode,
        typer.Option(
            help="one-to-one (default: maximum-weight bipartite matching), one-to-many (each "
            "RIGHT row to its best LEFT row) or many-to-many (groups across the sources).",
            metavar="MODE",
            rich_help_panel="Linking",
        ),
    ] = "one-to-one",
    k: Annotated[
        int, neighbours_opt("Candidates per row of the smaller side in the larger side's index.", "Linking")
    ] = 10,
    threshold: Annotated[
        Optional[float],
        typer.Option(
            callback=finite,
            help="Minimum raw score of a link (about -0.7 to 1.3). Default: learned from the two catalogs (match probability 0.5).",
            metavar="SCORE",
            rich_help_panel="Linking",
        ),
    ] = None,
    lexical: Annotated[
        bool,
        typer.Option(
            "--lexical/--no-lexical",
            help="Add TF-IDF, model-code, quantity and brand signals.",
            metavar="",
            rich_help_panel="Linking",
        ),
    ] = True,
    batch_size: BatchSizeOpt = 64,
    allow_same_file: Annotated[
        bool,
        typer.Option(
            "--allow-same-file",
            help="Link a file to itself (or to an identical copy); refused otherwise, as every row would link to itself.",
            metavar="",
            rich_help_panel="Linking",
        ),
    ] = False,
) -> None:
    """Link two catalogs: the rows of RIGHT that are the same product as a row of LEFT. Pairs within one catalog are never produced."""
    from eclip import api

    cfg = api.LinkConfig(
        left_id_col=left_id_col,
        right_id_col=right_id_col,
        left_text_cols=split_cols(left_text_cols),
        right_text_cols=split_cols(right_text_cols),
        model=model,
        runtime=runtime,
        left_embeddings=left_embeddings,
        right_embeddings=right_embeddings,
        k=k,
        mode=mode,
        threshold=threshold,
        lexical=lexical,
        batch_size=batch_size,
        allow_same_file=allow_same_file,
    )
    m = api.link(left, right, out, cfg)
    c = m["counts"]
    table = Table(title=f"eclip link: {left} -> {right}", show_header=False)
    table.add_row("rows", f"LEFT {c['left_rows']:,}, RIGHT {c['right_rows']:,}")
    table.add_row(
        "candidate pairs",
        f"{c['candidate_pairs']:,} (index of {m['index'].get('indexed', '-')}: {m['index'].get('factory')})",
    )
    table.add_row("links", f"{c['links']:,} ({m['matching']['mode']})")
    table.add_row("unmatched", f"LEFT {c['left_unmatched']:,}, RIGHT {c['right_unmatched']:,}")
    mm = m["matching"]
    table.add_row("threshold", f"{mm['threshold']:.4g} on {mm['threshold_on']} ({mm['learned']['threshold_from']})")
    table.add_row("time", f"{m['timings_s']['total']:.1f} s")
    table.add_row(
        "written",
        f"{out}/links.parquet, candidates.parquet, unmatched_left.parquet, unmatched_right.parquet, manifest.json",
    )
    console.print(table)
