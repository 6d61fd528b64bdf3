"""``eclip label`` (choose pairs for a reviewer, or ask them one by one) and ``eclip learn``
(fit a match model on the answers)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from eclip.progress import console

RunArg = Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory of `eclip dedupe` (its --out).")]
LabelsOpt = Annotated[
    Optional[Path], typer.Option("--labels", help="Label file. Default: RUN_DIR/label.csv.", metavar="CSV")
]
#: Catalog cells shown in the interactive loop are cut to this many characters.
CELL_CHARS = 300


def label(
    run_dir: RunArg,
    labels: LabelsOpt = None,
    batch: Annotated[int, typer.Option(min=1, help="Pairs to add to the label file.", metavar="N")] = 20,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            "-i",
            help="Ask in the terminal, pair by pair (keys y/n/u/q); answers are saved at once.",
            metavar="",
        ),
    ] = False,
    limit: Annotated[
        Optional[int], typer.Option(min=1, help="With --interactive: stop after N answers.", metavar="N")
    ] = None,
) -> None:
    """Choose the candidate pairs most worth a reviewer's time.

    Half are the ones the current model is least sure of, half are drawn at random across its probability range.

    No two pairs of a batch share a row or a group while others remain: one batch of 200 teaches as much as ten of 20.

    Writes label.csv (both titles, what they disagree on, the signals); fill in decision (same / different / unsure), then rerun or run `eclip learn`.
    """
    from eclip import api

    if interactive:
        _interactive(api.LabelSession(run_dir, labels), limit)
        return
    result = api.propose(run_dir, labels, batch)
    c = result["counts"]
    console.print(
        f"added {result['added']} pair(s) to {result['file']}: {c['pending']} wait for a decision; "
        f"answered so far: {c['same']} same, {c['different']} different, {c['unsure']} unsure."
    )
    if result["added"] == 0:
        console.print("every candidate pair is already in the file.")
    else:
        console.print(
            f"fill in the decision column (same / different / unsure), then run `eclip label {run_dir}` again or `eclip learn {run_dir}`."
        )


def _read_key() -> str:
    """One key from the terminal (no Enter needed), or a line from piped input."""
    if sys.stdin.isatty():
        return typer.getchar().lower()
    line = sys.stdin.readline()
    return line.strip().lower()[:1] if line else "q"


def _side_by_side(rec: dict[str, Any], number: int) -> Table:
    table = Table(title=f"pair {number}: same product?", show_lines=True)
    table.add_column("column", style="bold")
    table.add_column(f"A: {rec['id_a']}", overflow="fold")
    table.add_column(f"B: {rec['id_b']}", overflow="fold")
    for col in rec["row_a"]:
        if col == rec.get("id_col"):
            continue  # in the column headers
        va, vb = rec["row_a"][col], rec["row_b"][col]
        if va is None and vb is None:
            continue
        table.add_row(_plain(col), _plain(va), _plain(vb))
    signals = ", ".join(
        f"{k} {float(rec[k]):.3f}"
        for k in ("match_probability", "cos_embedding", "cos_tfidf", "code", "quantity", "brand")
        if rec.get(k) not in (None, "")
    )
    table.caption = escape(f"{signals}\n[y] same  [n] different  [u] unsure  [q] quit")
    return table


def _plain(value: Any) -> Any:
    """A catalog cell as inert rich text (no markup), cut to :data:`CELL_CHARS`."""
    from rich.text import Text

    return Text("" if value is None else str(value)[:CELL_CHARS])


def _interactive(session: Any, limit: Optional[int]) -> None:
    from eclip.matcher.labels import KEYS

    answered = 0
    while limit is None or answered < limit:
        row = session.next()
        if row is None:
            console.print("no pair is left to ask: every candidate pair is labelled, or shown in another session.")
            break
        session.save()
        console.print(_side_by_side(session.pair(row), row + 1))
        key = _read_key()
        while key not in KEYS and key != "q":
            console.print("press y (same), n (different), u (unsure) or q (quit).")
            key = _read_key()
        if key == "q":
            break
        kept = session.answer(row, KEYS[key])
        if kept:
            console.print(
                f"[yellow]pair {row + 1} was already answered {kept} (by another session, or in the file); that answer is kept.[/]"
            )
        answered += 1
    session.close()
    c = session.counts()
    console.print(
        f"saved {session.path}: {c['same']} same, {c['different']} different, {c['unsure']} unsure, {c['pending']} waiting."
    )


def learn(
    run_dir: RunArg,
    labels: LabelsOpt = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Model file (default: RUN_DIR/match_model.json).", metavar="FILE"),
    ] = None,
) -> None:
    """Fit a match model on labelled pairs (logistic regression).

    The model weighs every signal, and is saved as JSON.

    It is checked against the label-free probability on held-out labels, then kept, blended with it, or set aside.

    Use it with `eclip dedupe CATALOG --match-model FILE`.
    """
    from eclip import api

    model, path = api.learn(run_dir, labels, out)
    c = model.info["label_counts"]
    table = Table(title=f"eclip learn: {run_dir}", show_header=False)
    table.add_row(
        "labels", f"{c['same']} same, {c['different']} different, {c['unsure']} unsure, {c['pending']} waiting"
    )
    table.add_row(
        "fitted on",
        f"{c['fitted_on']} pairs"
        + (
            f" ({c['not_candidates']} labelled pairs are not candidates of this run: kept as constraints only)"
            if c["not_candidates"]
            else ""
        ),
    )
    table.add_row("features", ", ".join(model.features))
    if model.cv:
        table.add_row(
            "cross-validated",
            f"precision {model.cv.precision:.3f}, recall {model.cv.recall:.3f}, F1 {model.cv.f1:.3f} ({model.cv.folds} folds)",
        )
    else:
        table.add_row("cross-validated", "too few labels of a class for 2 folds: not checked, so not used")
    check = model.check or {}
    table.add_row("kept", f"{model.use}: {check.get('reason', '')}")
    for option, e in check.get("estimates", {}).items():
        exp = check.get("expected", {}).get(option)
        t = check.get("thresholds", {}).get(option)
        table.add_row(
            f"  {option}",
            f"held-out P {e['precision']:.3f} R {e['recall']:.3f} F1 {e['f1']:.3f}"
            + (f"; at threshold {t:g} it expects P {exp['precision']:.3f} R {exp['recall']:.3f}" if exp else ""),
        )
    curve = check.get("curves", {}).get(model.use)
    if curve:
        table.add_row(
            "expected P / R",
            ", ".join(f"{t}: {v['precision']:.2f} / {v['recall']:.2f}" for t, v in curve.items())
            + f" (by threshold, for {model.use})",
        )
    if check.get("folds"):
        table.add_row(
            "",
            f"({check['folds']} folds over {check['labels']} labels, weighted to the candidate pairs they stand for)",
        )
    table.add_row("written", str(path))
    console.print(table)
    console.print(f"next: eclip dedupe CATALOG --out DIR --match-model {path}")
