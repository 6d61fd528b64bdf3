"""Write a review file without ever losing a reviewer's decisions.

``eclip report`` writes a review CSV with an empty ``decision`` column for a reviewer to fill
in. Run again (a new threshold, more groups listed), it must not blank a filled file:

* a filled file for the same run, whose decided rows are all listed again, gets the new
  listing with every decision carried over (merged in);
* any other filled file (another run's groups, rows no longer listed, or a file eclip cannot
  read) is left exactly as it is, and the fresh review goes beside it (``review-2.csv``, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from eclip.errors import EclipError
from eclip.matcher.constraints import RUN_COLUMN, read_decisions_csv
from eclip.rundir import refuse_overwrite, write_csv

#: Columns that name a reviewed row: a group's member, or a link.
KEY_COLUMNS = ("group_id", "id", "left_id", "right_id")


@dataclass(frozen=True)
class ReviewWritten:
    """Where the review went: ``path``; ``kept`` decisions carried over from a filled file at
    the asked path; ``beside``: the filled file left untouched when the review went elsewhere."""

    path: Path
    kept: int = 0
    beside: Path | None = None
    why: str = ""

    def message(self) -> str | None:
        """One line for the user, or ``None`` when nothing was filled before."""
        if self.beside is not None:
            return (
                f"{self.beside} holds decisions ({self.why}); it is left as it is, and the new review is {self.path}."
            )
        if self.kept:
            return f"{self.path}: kept the {self.kept} decision(s) already filled in."
        return None


def _decided(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("decision").fill_null("").str.strip_chars() != "")


def _free_path(path: Path) -> Path:
    """``review-2.csv``, ``review-3.csv``, ...: the first name beside ``path`` not taken."""
    k = 2
    while (candidate := path.with_name(f"{path.stem}-{k}{path.suffix}")).exists():
        k += 1
    return candidate


def write_review(frame: pl.DataFrame, path: str | Path, inputs: Iterable[str | Path | None] = ()) -> ReviewWritten:
    """Write the review ``frame`` (decisions empty) to ``path``, keeping any filled decisions.

    Args:
        frame: the new review rows: :data:`KEY_COLUMNS` present in it name a row, plus
            ``decision`` (empty) and, for a dedupe run, :data:`RUN_COLUMN`.
        path: the review file asked for.
        inputs: the files the command reads (the run's catalog, a gold file): ``path`` may
            not be one of them.

    Returns:
        Where it was written and what was kept (:class:`ReviewWritten`).

    Raises:
        InputFileError: ``path`` is one of ``inputs``.
        RunDirError: the file cannot be written (:func:`eclip.rundir.atomic_path`).
    """
    path = Path(path)
    refuse_overwrite(path, inputs)
    if not path.exists():
        return ReviewWritten(write_csv(frame, path, for_people=True))
    try:
        old = read_decisions_csv(path, ("decision",), "review file", "eclip report writes one")
    except EclipError:
        return ReviewWritten(
            write_csv(frame, _free_path(path), for_people=True),
            beside=path,
            why="it is not a review file eclip can read",
        )
    decided = _decided(old)
    if decided.is_empty():
        return ReviewWritten(write_csv(frame, path, for_people=True))
    key = [c for c in KEY_COLUMNS if c in frame.columns]
    why = ""
    if any(c not in old.columns for c in key):
        why = "another kind of review"
    elif RUN_COLUMN in frame.columns and set(old.get_column(RUN_COLUMN).drop_nulls().to_list()) != set(
        frame.get_column(RUN_COLUMN).to_list()
    ):
        why = "for another run's groups"
    else:
        new_keys = frame.select(pl.col(c).cast(pl.String) for c in key)
        carried = decided.select(*(pl.col(c).cast(pl.String) for c in key), pl.col("decision").alias("_kept"))
        if carried.join(new_keys, on=key, how="anti").height:
            why = "for rows this report no longer lists"
        else:
            merged = (
                frame.with_columns(pl.col(c).cast(pl.String) for c in key)
                .join(carried.unique(subset=key, keep="first"), on=key, how="left", maintain_order="left")
                .with_columns(pl.coalesce("_kept", "decision").alias("decision"))
                .drop("_kept")
                .with_columns(pl.col(c).cast(frame.schema[c]) for c in key)
            )
            return ReviewWritten(write_csv(merged, path, for_people=True), kept=decided.height)
    return ReviewWritten(write_csv(frame, _free_path(path), for_people=True), beside=path, why=why)
