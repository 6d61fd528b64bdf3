"""``eclip eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import polars as pl
import typer
from rich.table import Table

from eclip.cli.options import SingletonClusterOpt, finite
from eclip.progress import console


def eval_(
    groups: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="groups.parquet (eclip dedupe), links.parquet (eclip link), predictions.parquet (eclip "
            "classify) or flagged.parquet (eclip filter-adult), or the run directory holding one.",
        ),
    ],
    gold: Annotated[
        Path,
        typer.Option(
            help="Gold labels: a pairs file (id_a,id_b) or a table with an id and a cluster or class column.",
            metavar="FILE",
            rich_help_panel="Gold",
        ),
    ],
    gold_col: Annotated[
        Optional[str],
        typer.Option(
            help="Cluster-id or class column of the gold table (groups: cluster_id if present).",
            metavar="COL",
            rich_help_panel="Gold",
        ),
    ] = None,
    gold_id_col: Annotated[
        str, typer.Option(help="Id column of the gold table.", metavar="COL", rich_help_panel="Gold")
    ] = "id",
    singleton_cluster: SingletonClusterOpt = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--sweep",
            "--calibrate",
            help="Sweep every grouping method (mutual, average, components) and raw-score threshold (about -0.7 "
            "to 1.3) on the run's pairs; write the best F1 (or the most recall at --target-precision) to "
            "calibration.json.",
            metavar="",
            rich_help_panel="Calibration",
        ),
    ] = False,
    target_precision: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=1.0,
            callback=finite,
            help="With --sweep: the lowest threshold reaching this pairwise precision.",
            metavar="P",
            rich_help_panel="Calibration",
        ),
    ] = None,
    calibration_out: Annotated[
        Optional[Path],
        typer.Option(
            help="Where to write calibration.json (default: beside the groups).",
            metavar="FILE",
            rich_help_panel="Calibration",
        ),
    ] = None,
    positive: Annotated[
        Optional[str],
        typer.Option(
            help="flagged.parquet: the --gold-col value meaning adult (default: true/1/yes).",
            metavar="VALUE",
            rich_help_panel="Labels and flags",
        ),
    ] = None,
    at_precision: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            callback=finite,
            help="flagged.parquet: report recall at this precision.",
            metavar="P",
            rich_help_panel="Labels and flags",
        ),
    ] = 0.9,
) -> None:
    """Score a run against gold labels: precision, recall and F1.

    Groups: pairwise and B-cubed P/R/F1, ARI, NMI, blocking recall@k. Links: P/R/F1 of the cross pairs.

    Predictions: accuracy, macro-F1, confusions. Flags: PR-AUC, recall at a precision.
    """
    from eclip import api

    groups = _run_file(groups)
    columns = _columns(groups)
    if {"left_id", "right_id"} <= columns:
        _eval_links(api.evaluate_links(groups, gold))
        return
    if columns and not {"id", "group_id"} <= columns:
        _eval_labels(
            api.evaluate_predictions(
                groups,
                gold,
                gold_id_col=gold_id_col,
                gold_col=gold_col,
                positive=positive,
                precision_target=at_precision,
            ),
            at_precision,
        )
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
    console.print(
        f"ARI {m['ari']:.4f}   NMI {m['nmi']:.4f}   predicted pairs {m['predicted_pairs']:,}   gold pairs {m['gold_pairs']:,}   true pairs {m['true_pairs']:,}"
    )
    if abs(m["f1"] - m["bcubed_f1"]) > 0.3:
        console.print(
            f"note: pairwise F1 {m['f1']:.4f} and B-cubed F1 {m['bcubed_f1']:.4f} disagree. Pairwise counts matched pairs, so large "
            "groups weigh most; B-cubed averages over rows, so a row left alone still scores its own precision 1: "
            "a run that matches little keeps a high B-cubed F1."
        )
    if "blocking" in result:
        console.print("blocking " + "   ".join(f"{k} {v:.4f}" for k, v in result["blocking"].items()))
    if "calibration" in result:
        c = result["calibration"]
        swept = ", ".join(f"{m_} F1 {v['f1']:.4f} at {v['threshold']:g}" for m_, v in c["methods"].items())
        console.print(f"calibrated ({c['objective']}) over every grouping method on this run's pairs: {swept}.")
        console.print(
            f"[bold]{c['method']} wins[/] (the run used {c['run_method']}): threshold {c['threshold']:g} on the raw score -> "
            f"P {c['precision']:.4f} R {c['recall']:.4f} F1 {c['f1']:.4f}; written to {c['written_to']}"
        )
        if c.get("meaning"):
            console.print(f"note: {c['meaning']}.")


#: What a run directory holds, in the order ``eval`` looks for it.
RUN_FILES = ("groups.parquet", "links.parquet", "predictions.parquet", "flagged.parquet")


def _run_file(path: Path) -> Path:
    """The file to score: ``path`` itself, or the run file inside the directory ``path``."""
    if not path.is_dir():
        return path
    for name in RUN_FILES:
        if (path / name).is_file():
            return path / name
    raise typer.BadParameter(
        f"{path} is a directory without {', '.join(RUN_FILES)}: pass a run directory of eclip dedupe, link, classify or filter-adult, or one of those files",
        param_hint="FILE",
    )


def _columns(path: Path) -> set[str]:
    """The columns of the Parquet run file ``path`` (empty when it does not exist: the job
    says so).

    Raises:
        EclipError: ``path`` is not Parquet (e.g. a CSV), in one line naming the files eval reads.
    """
    from eclip.errors import EclipError

    if not path.exists():
        return set()
    try:
        return set(pl.read_parquet_schema(path))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise EclipError(
            f"{path}: not a Parquet file ({str(exc).splitlines()[0][:100]}); eclip eval reads the {', '.join(RUN_FILES)} "
            "that eclip dedupe, link, classify or filter-adult wrote, or their run directory."
        ) from None


def _eval_links(result: dict) -> None:
    m = result["metrics"]
    table = Table(title=f"eclip eval: {result['file']}", show_header=False)
    table.add_row("cross pairs (links)", f"precision {m['precision']:.4f}, recall {m['recall']:.4f}, F1 {m['f1']:.4f}")
    table.add_row(
        "links / gold pairs",
        f"{m['links']:,} / {m['gold_pairs']:,} ({result['gold_orientation']}"
        + (f"; {m['gold_pairs_left_out']:,} gold pairs name ids not in this run" if m["gold_pairs_left_out"] else "")
        + ")",
    )
    table.add_row("gold pairs among the candidates", f"{m['gold_pairs_in_candidates']:.4f}")
    console.print(table)


def _eval_labels(result: dict, at_precision: float) -> None:
    m = result["metrics"]
    table = Table(title=f"eclip eval: {result['file']}", show_header=False)
    if result["task"] == "filter":
        op = m["operating_point"]
        table.add_row("labelled rows", f"{m['rows']:,} ({m['positives']:,} positive = {result['positive'] or 'true'})")
        table.add_row("PR-AUC / ROC-AUC", f"{m['pr_auc']:.4f} / {m['roc_auc']:.4f}")
        table.add_row(
            f"recall at precision {at_precision:g}",
            f"{m[f'recall_at_precision_{at_precision:g}']:.4f} (threshold {op['threshold']:.4f}, oracle on these rows)",
        )
        fw = m["flags_as_written"]
        table.add_row(
            "flags as written", f"{fw['flagged']:,} flagged: precision {fw['precision']:.4f}, recall {fw['recall']:.4f}"
        )
    else:
        table.add_row(
            "labelled rows",
            f"{m['rows']:,} ({m['classes']} classes)"
            + (
                f"; {result['excluded_training_rows']:,} probe training rows left out"
                if result["excluded_training_rows"]
                else ""
            ),
        )
        table.add_row(
            "accuracy / macro-F1", f"{m['accuracy']:.4f} / {m['macro_f1']:.4f} (weighted F1 {m['weighted_f1']:.4f})"
        )
        table.add_row(
            "coverage",
            f"{m['coverage']:.2%} predicted, accuracy on those {m['accuracy_on_predicted'] if m['accuracy_on_predicted'] is not None else 0:.4f}",
        )
        table.add_row(
            "top confusions",
            "; ".join(f"{c['gold']} -> {c['predicted']} ({c['rows']})" for c in m["top_confusions"][:5]) or "none",
        )
        table.add_row(
            "worst classes",
            "; ".join(f"{c['class']} F1 {c['f1']:.2f} (n={c['support']})" for c in m["worst_classes"][:5]),
        )
    console.print(table)
