"""Progress shown by every long step: a rich progress bar on a terminal, and plain lines
when stderr goes to a file or a pipe (a log then reads top to bottom, with no ``\\r`` frames).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

#: Progress and status messages go to stderr so that stdout stays clean for data.
console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second, e.g. ``812 rows/s``."""

    def __init__(self, unit: str = "rows") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:  # noqa: ANN001 - rich's Task
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} {self.unit}/s", style="cyan")


#: Seconds between two plain progress lines when stderr is not a terminal
#: (``ECLIP_PROGRESS_INTERVAL`` overrides it; 0 prints every update).
LOG_INTERVAL_S = 30.0


class LogProgress:
    """Plain-line progress for logs: one line when a step starts, one every
    ``interval`` seconds while it runs, one when it ends. Has the one method eclip's steps
    call on a rich ``Progress``: :meth:`advance`."""

    def __init__(self, description: str, total: int | None, unit: str, interval: float) -> None:
        self.description, self.total, self.unit, self.interval = description, total, unit, interval
        self.done = 0
        self.started = self.last = time.monotonic()
        self._line("started")

    def _line(self, state: str) -> None:
        elapsed = time.monotonic() - self.started
        of = f"/{self.total:,}" if self.total else ""
        pct = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        rate = f", {self.done / elapsed:,.0f} {self.unit}/s" if elapsed > 0 and self.done else ""
        console.print(
            f"{self.description}: {state} {self.done:,}{of} {self.unit}{pct}{rate}, {elapsed:.0f} s",
            highlight=False,
            soft_wrap=True,
        )

    def advance(self, task: TaskID, advance: float = 1) -> None:
        self.done += int(advance)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line("at")

    def finish(self) -> None:
        self._line("done")


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None, unit: str = "rows"
) -> Iterator[tuple[Progress | LogProgress, TaskID]]:
    """A rich progress bar on stderr with a rate column, or :class:`LogProgress` lines when
    stderr is not a terminal; yields ``(progress, task_id)``."""
    if not console.is_terminal:
        log = LogProgress(description, total, unit, float(os.environ.get("ECLIP_PROGRESS_INTERVAL", LOG_INTERVAL_S)))
        yield log, TaskID(0)
        log.finish()
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield progress, task
