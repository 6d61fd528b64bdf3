"""``eclip report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from eclip.cli.options import GoldIdColOpt, ImageRootOpt, SingletonClusterOpt
from eclip.progress import console
from eclip.report.order import DEFAULT_ORDER, ReportOrder


def report(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="Run directory of `eclip dedupe`, `eclip cluster` or `eclip link`.")
    ],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="HTML file to write. Default: RUN/report.html.",
            metavar="FILE",
            rich_help_panel="Output",
        ),
    ] = None,
    review_out: Annotated[
        Optional[Path],
        typer.Option(
            help="Review CSV to write (group_id, id, decision, title). Default: RUN/review.csv.",
            metavar="FILE",
            rich_help_panel="Output",
        ),
    ] = None,
    gold: Annotated[
        Optional[Path],
        typer.Option(
            help="Gold labels (pairs file or table) for precision/recall against the threshold. A labelled cluster run reuses its own.",
            metavar="FILE",
            rich_help_panel="Gold",
        ),
    ] = None,
    gold_col: Annotated[
        Optional[str], typer.Option(help="Cluster-id column of --gold.", metavar="COL", rich_help_panel="Gold")
    ] = None,
    gold_id_col: GoldIdColOpt = None,
    singleton_cluster: SingletonClusterOpt = None,
    image_root: ImageRootOpt = None,
    order: Annotated[
        ReportOrder,
        typer.Option(
            help="Order of the gallery and the review file: least-certain (groups whose weakest accepted link has the "
            "lowest match probability, or score, first; clusters by cohesion), most-certain, or largest.",
            metavar="ORDER",
            rich_help_panel="Output",
        ),
    ] = DEFAULT_ORDER,
    max_groups: Annotated[
        int,
        typer.Option(
            min=1, help="Groups or clusters listed: the first N in --order.", metavar="N", rich_help_panel="Output"
        ),
    ] = 10_000,
    max_thumbnails: Annotated[
        int,
        typer.Option(
            min=0, help="Images embedded as thumbnails (about 3 KB each).", metavar="N", rich_help_panel="Output"
        ),
    ] = 5_000,
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
        order=order,
    )
    console.print(
        f"wrote {r['html']} ({r['bytes'] / 2**20:.1f} MiB: {r['groups']:,} groups, {r['thumbnails']:,} thumbnails) and {r['review']}"
    )
    if r["review_note"]:
        console.print(f"[yellow]{escape(r['review_note'])}[/]", highlight=False)
