"""Sharing a label file between reviewers (issue 34): its lock, which pair each interactive
session is showing, and how an answer is merged into the file as it is on disk.

Any number of ``eclip label --interactive`` sessions, and ``eclip label`` itself, may work on
one label file at once without losing an answer:

* every read-modify-write of the file happens under :func:`label_lock`, an exclusive
  ``flock`` on ``.NAME.lock`` beside it (the ``filelock`` package). It is held for the
  re-read, merge and atomic rewrite only (a fraction of a second), a second writer waits for
  it, and the kernel releases it when its process dies, so a killed session never leaves
  the file locked. Inside it the file is read again from disk and changed row by row, never
  replaced by a table read earlier.
* each session records the pending pair it is showing in ``.NAME.claims`` (JSON, written
  under the same lock), so two reviewers are not asked the same pair at once. A claim is
  ignored once its process is gone (``os.kill(pid, 0)``), and after :data:`CLAIM_TTL_S` in
  any case (a reused pid, or a session on another machine sharing the folder).
* an answer is written onto its pair's rows of the file just re-read (either order of the
  ids), or appended; a pair the file already answers otherwise keeps its first answer
  (:func:`merge_decision`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.errors import RunDirError
from eclip.rundir import write_json

#: Seconds a writer waits for another one's lock before giving up with a message.
LOCK_WAIT_S = 120.0
#: Seconds after which a claim counts as abandoned, whatever its process.
CLAIM_TTL_S = 12 * 3600.0
HOST = socket.gethostname()


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of a label file: ``.NAME.lock`` beside it."""
    p = Path(path)
    return p.with_name(f".{p.name}.lock")


def claims_path(path: str | os.PathLike[str]) -> Path:
    """The claims file of a label file: ``.NAME.claims`` beside it."""
    p = Path(path)
    return p.with_name(f".{p.name}.claims")


@contextlib.contextmanager
def label_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """``with label_lock(label_file):`` hold the label file's exclusive lock for the block.

    While it is held no other eclip process reads-and-rewrites the file or its claims, so what
    the block reads is the file as it is, and what it writes loses nothing written before.

    Raises:
        RunDirError: another process held the lock for over :data:`LOCK_WAIT_S` seconds.
    """
    from filelock import FileLock, Timeout

    where = lock_path(path)
    where.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(where), timeout=LOCK_WAIT_S)
    try:
        lock.acquire()
    except Timeout:
        raise RunDirError(
            f"{path}: another eclip label process has held its lock {where} for over {LOCK_WAIT_S:g} s; "
            "let it finish (or stop it), then try again."
        ) from None
    try:
        yield
    finally:
        lock.release()


def session_name() -> str:
    """A new session's name in the claims file: its pid and a random tag (a process may hold
    several sessions)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(claim: dict[str, Any]) -> bool:
    """Whether a claim's session may still be showing its pair."""
    try:
        pid, at = int(claim.get("pid", 0)), float(claim.get("at", 0.0))
    except (TypeError, ValueError):
        return False
    if pid <= 0 or time.time() - at > CLAIM_TTL_S:
        return False
    if claim.get("host") != HOST:
        return True  # cannot be checked from here: it lasts until CLAIM_TTL_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return False
    return True


def live_claims(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The claims of live sessions, by session name (call under :func:`label_lock`); a
    missing or unreadable claims file holds none."""
    try:
        data = json.loads(claims_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and _alive(v)}


def set_claim(path: str | os.PathLike[str], session: str, pair: tuple[str, str] | None) -> None:
    """Record that ``session`` shows ``pair`` (``None``: nothing), dropping the claims of dead
    sessions (call under :func:`label_lock`)."""
    claims = live_claims(path)
    claims.pop(session, None)
    if pair is not None:
        claims[session] = {"pid": os.getpid(), "host": HOST, "at": time.time(), "id_a": pair[0], "id_b": pair[1]}
    target = claims_path(path)
    if claims:
        write_json(claims, target)
    else:
        target.unlink(missing_ok=True)


def claimed_by_others(path: str | os.PathLike[str], session: str) -> set[frozenset[str]]:
    """The pairs (as ``{id_a, id_b}``) that other live sessions are showing."""
    return {frozenset((str(c.get("id_a")), str(c.get("id_b")))) for k, c in live_claims(path).items() if k != session}


def pair_rows(table: pl.DataFrame, a: str, b: str) -> np.ndarray:
    """``(m,)`` bool: the rows of a label table that hold the pair ``a, b`` (either order)."""
    same = ((pl.col("id_a") == a) & (pl.col("id_b") == b)) | ((pl.col("id_a") == b) & (pl.col("id_b") == a))
    return table.select(same.fill_null(False).alias("hit"))["hit"].to_numpy()


def merge_decision(
    table: pl.DataFrame, decisions: np.ndarray, row: pl.DataFrame, decision: str
) -> tuple[pl.DataFrame | None, str | None]:
    """Merge one answer into a label table as just read from disk.

    Args:
        table: the file's rows (every column text). decisions: ``(m,)`` their normalised
            decisions (``""``: pending). row: the one-row label table of the pair, as the
            session showed it (appended when the file lacks the pair). decision: same /
            different / unsure, or ``""`` to make sure the pair is in the file (pending).

    Returns:
        ``(table to write, None if nothing changes; the decision the file already holds for
        the pair when it differs from decision: then nothing is written, the first answer
        stands)``.
    """
    hit = pair_rows(table, row["id_a"][0], row["id_b"][0])
    there = sorted({d for d in decisions[hit].tolist() if d})
    if decision and there and there != [decision]:
        return None, there[0]
    if not hit.any():
        return pl.concat([table, row.with_columns(pl.lit(decision).alias("decision"))], how="diagonal"), None
    fill = hit & (decisions == "")
    if not (decision and fill.any()):
        return None, None
    column = pl.when(pl.Series(fill)).then(pl.lit(decision)).otherwise(pl.col("decision"))
    return table.with_columns(column.alias("decision")), None


def first_pending(table: pl.DataFrame, decisions: np.ndarray, taken: set[frozenset[str]]) -> int | None:
    """The first pending row of a label table whose pair is neither in ``taken`` (shown by
    another session) nor answered on another row; ``None`` if none."""
    pairs = [frozenset(p) for p in zip(table["id_a"].to_list(), table["id_b"].to_list())]
    answered = {p for p, d in zip(pairs, decisions.tolist()) if d}
    for r in np.flatnonzero(decisions == "").tolist():
        if pairs[r] not in taken and pairs[r] not in answered:
            return r
    return None
