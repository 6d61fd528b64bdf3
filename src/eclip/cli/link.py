"""``eclip link``: match one catalog against another."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from eclip.cli.options import (
    BatchSizeOpt,
    ModelOpt,
    RuntimeOpt,
    WorkersOpt,
    finite,
    neighbours_opt,
    parse_sep,
    split_cols,
)
from eclip.matcher.assignment import LinkMode
from eclip.progress import console

SIDES, FILES, IMAGES, SIGNALS = "Sides", "Files (CSV)", "Images", "Signals"


def _sep(flag: str) -> Any:
    return typer.Option(
        flag, metavar="CHAR", rich_help_panel=FILES, help=f"{_SIDE[flag]}'s CSV delimiter; overrides --sep."
    )


def _encoding(flag: str) -> Any:
    return typer.Option(
        flag,
        metavar="NAME",
        rich_help_panel=FILES,
        callback=_check_encoding,
        help=f"{_SIDE[flag]}'s CSV encoding; overrides --encoding.",
    )


_SIDE = {f"--{side}-{what}": side.upper() for side in ("left", "right") for what in ("sep", "encoding")}


def _bits(param: typer.CallbackParam, value: int) -> int:
    """``--phash-max-distance`` within 0..64 (a callback, not ``min``/``max``: the range
    would widen the help's metavar column and squeeze every description of the panel)."""
    if not 0 <= value <= 64:
        raise typer.BadParameter(f"{value} is not within 0 to 64 bits.", param_hint=param.opts)
    return value


def _check_encoding(param: typer.CallbackParam, value: Optional[str]) -> Optional[str]:
    """Refuse an unknown codec name at once, naming the option that gave it."""
    import codecs

    if value is not None:
        try:
            codecs.lookup(value)
        except LookupError:
            raise typer.BadParameter(
                f"unknown encoding {value!r}; pass a Python codec name such as utf-8, cp1252 or latin-1.",
                param_hint=param.opts,
            ) from None
    return value


def link(
    left: Annotated[Path, typer.Argument(metavar="LEFT", help="Your catalog file: .csv, .tsv, .parquet or .jsonl.")],
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
        typer.Option(help="LEFT's (and by default RIGHT's) id column.", metavar="COL", rich_help_panel=SIDES),
    ] = "id",
    right_id_col: Annotated[
        Optional[str], typer.Option(help="RIGHT's id column.", metavar="COL", rich_help_panel=SIDES)
    ] = None,
    left_text_cols: Annotated[
        Optional[list[str]],
        typer.Option(
            help="LEFT's (and by default RIGHT's) title columns (repeat, or separate by commas). Default: found by name.",
            metavar="COLS",
            rich_help_panel=SIDES,
        ),
    ] = None,
    right_text_cols: Annotated[
        Optional[list[str]], typer.Option(help="RIGHT's title columns.", metavar="COLS", rich_help_panel=SIDES)
    ] = None,
    left_image_col: Annotated[
        Optional[str],
        typer.Option(
            help="LEFT's (and by default RIGHT's) image column: paths or http(s) URLs.",
            metavar="COL",
            rich_help_panel=SIDES,
        ),
    ] = None,
    right_image_col: Annotated[
        Optional[str], typer.Option(help="RIGHT's image column.", metavar="COL", rich_help_panel=SIDES)
    ] = None,
    left_embeddings: Annotated[
        Optional[Path],
        typer.Option(help="LEFT's embeddings directory (eclip embed).", metavar="DIR", rich_help_panel=SIDES),
    ] = None,
    right_embeddings: Annotated[
        Optional[Path],
        typer.Option(help="RIGHT's embeddings directory (LEFT's model).", metavar="DIR", rich_help_panel=SIDES),
    ] = None,
    sep: Annotated[
        Optional[str],
        typer.Option(
            metavar="CHAR", rich_help_panel=FILES, help="Both files' CSV delimiter (default: sniffed among , ; tab |)."
        ),
    ] = None,
    encoding: Annotated[
        Optional[str],
        typer.Option(
            metavar="NAME",
            rich_help_panel=FILES,
            callback=_check_encoding,
            help="Both files' CSV encoding, e.g. cp1252 (default: sniffed: BOM, UTF-8, else cp1252).",
        ),
    ] = None,
    left_sep: Annotated[Optional[str], _sep("--left-sep")] = None,
    right_sep: Annotated[Optional[str], _sep("--right-sep")] = None,
    left_encoding: Annotated[Optional[str], _encoding("--left-encoding")] = None,
    right_encoding: Annotated[Optional[str], _encoding("--right-encoding")] = None,
    left_image_root: Annotated[
        Optional[Path],
        typer.Option(
            help="Folder LEFT's image paths are relative to, and may not leave. Default: LEFT's folder.",
            metavar="DIR",
            rich_help_panel=IMAGES,
        ),
    ] = None,
    right_image_root: Annotated[
        Optional[Path],
        typer.Option(
            help="Folder RIGHT's image paths are relative to. Default: RIGHT's folder.",
            metavar="DIR",
            rich_help_panel=IMAGES,
        ),
    ] = None,
    allow_outside_root: Annotated[
        bool,
        typer.Option(
            "--allow-outside-root", metavar="", rich_help_panel=IMAGES, help="Follow image paths that leave the root."
        ),
    ] = False,
    allow_private_urls: Annotated[
        bool,
        typer.Option(
            "--allow-private-urls",
            metavar="",
            rich_help_panel=IMAGES,
            help="Fetch image URLs on loopback, private or link-local addresses.",
        ),
    ] = False,
    model: ModelOpt = "minilm",
    runtime: RuntimeOpt = "auto",
    mode: Annotated[
        LinkMode,
        typer.Option(
            help="one-to-one (default: maximum-weight bipartite matching), one-to-many (each "
            "RIGHT row to its best LEFT row) or many-to-many (groups across both).",
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
    signals: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Signals among text, image, fused, phash (repeat, or separate by commas). "
            "Default: all both sides have.",
            metavar="LIST",
            rich_help_panel=SIGNALS,
        ),
    ] = None,
    image_threshold: Annotated[
        float,
        typer.Option(
            callback=finite, help="Minimum image-embedding cosine of a link.", metavar="COS", rich_help_panel=SIGNALS
        ),
    ] = 0.9,
    fused_threshold: Annotated[
        float,
        typer.Option(
            callback=finite, help="Minimum fused-embedding cosine of a link.", metavar="COS", rich_help_panel=SIGNALS
        ),
    ] = 0.85,
    phash_max_distance: Annotated[
        int,
        typer.Option(
            callback=_bits,
            help="Largest pHash Hamming distance (0 to 64 bits) of a link.",
            metavar="BITS",
            rich_help_panel=SIGNALS,
        ),
    ] = 8,
    lexical: Annotated[
        bool,
        typer.Option(
            "--lexical/--no-lexical",
            help="Add TF-IDF, model-code, quantity and brand signals to the text score.",
            metavar="",
            rich_help_panel=SIGNALS,
        ),
    ] = True,
    batch_size: BatchSizeOpt = 64,
    workers: WorkersOpt = -1,
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
    """Link two catalogs: the same products in LEFT and RIGHT.

    Finds the rows of RIGHT that are the same product as a row of LEFT, on titles and (with image columns) images.

    Pairs within one catalog are never produced.
    """
    from eclip import api

    cfg = api.LinkConfig(
        left_id_col=left_id_col,
        right_id_col=right_id_col,
        left_text_cols=split_cols(left_text_cols),
        right_text_cols=split_cols(right_text_cols),
        left_sep=parse_sep(left_sep, "--left-sep") or parse_sep(sep),
        right_sep=parse_sep(right_sep, "--right-sep") or parse_sep(sep),
        left_encoding=left_encoding or encoding,
        right_encoding=right_encoding or encoding,
        left_image_col=left_image_col,
        right_image_col=right_image_col,
        left_image_root=left_image_root,
        right_image_root=right_image_root,
        allow_outside_root=allow_outside_root,
        allow_private_urls=allow_private_urls,
        model=model,
        runtime=runtime,
        left_embeddings=left_embeddings,
        right_embeddings=right_embeddings,
        signals=tuple(split_cols(signals) or ()) if signals is not None else None,
        image_threshold=image_threshold,
        fused_threshold=fused_threshold,
        phash_max_distance=phash_max_distance,
        workers=workers,
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
    indexes = ", ".join(
        f"{s}: {v.get('factory') or v.get('kind')}" + (f" of {v['indexed']}" if "indexed" in v else "")
        for s, v in m["index"].items()
        if v
    )
    table.add_row("signals", ", ".join(m["matching"]["signals"]))
    table.add_row("candidate pairs", f"{c['candidate_pairs']:,} ({indexes or 'no index'})")
    by = ", ".join(f"{k} {v:,}" for k, v in c["links_by_signal"].items())
    table.add_row("links", f"{c['links']:,} ({m['matching']['mode']}" + (f"; passing: {by})" if by else ")"))
    table.add_row("unmatched", f"LEFT {c['left_unmatched']:,}, RIGHT {c['right_unmatched']:,}")
    mm = m["matching"]
    table.add_row("threshold", f"{mm['threshold']:.4g} on {mm['threshold_on']} ({mm['learned']['threshold_from']})")
    table.add_row("time", f"{m['timings_s']['total']:.1f} s")
    table.add_row(
        "written",
        f"{out}/links.parquet, candidates.parquet, unmatched_left.parquet, unmatched_right.parquet, manifest.json",
    )
    console.print(table)
