"""Run directories: atomic writes and the JSON manifest every step reads and writes.

A run directory holds Parquet and ``.npy`` files plus ``manifest.json``. Every write goes to a
temporary file in the same folder and is then renamed over the target (``os.replace``), so a
killed job leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

MANIFEST = "manifest.json"
#: Advisory lock file of a directory being written, and the file naming its holder.
LOCK_FILE, HOLDER_FILE = ".eclip.lock", ".eclip.holder"
#: Locks this process holds, by directory (a job may lock the same directory again).
_HELD: dict[Path, Any] = {}


def fault_point(name: str) -> None:
    """Die here, as a ``kill -9`` would, when ``ECLIP_FAULT_AT`` names this point (the
    fault-injection tests' hook: every job is killed at each of its points and rerun)."""
    if os.environ.get("ECLIP_FAULT_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _waits() -> bool:
    """Whether a job waits for a directory's lock (``eclip --wait``, ``ECLIP_WAIT=1``)
    instead of being refused at once."""
    return os.environ.get("ECLIP_WAIT", "0") not in ("0", "", "false", "False")


def lock_dir(folder: str | os.PathLike[str]) -> Path:
    """Take the advisory lock of a run, embeddings or index directory (created if missing).

    One process writes a directory at a time. The lock is a ``flock`` on ``folder/.eclip.lock``
    (the ``filelock`` package), which the kernel releases when its process dies, so a lock
    left by a killed job is taken over at once. The holder's pid and command are written
    beside it for the message. Locking again from the same process only counts up.

    Raises:
        RunDirError: another process holds the lock (unless waiting is asked for).
    """
    from filelock import FileLock, Timeout

    from eclip.errors import RunDirError

    path = Path(folder).resolve()
    make_dir(path)
    if path in _HELD:
        _HELD[path].acquire()
        return path
    lock = FileLock(str(path / LOCK_FILE), timeout=-1 if _waits() else 0)
    try:
        lock.acquire()
    except Timeout:
        holder = (
            (path / HOLDER_FILE).read_text(encoding="utf-8").strip()
            if (path / HOLDER_FILE).exists()
            else "another process"
        )
        raise RunDirError(
            f"{path} is in use by {holder}; wait for it to finish, run `eclip --wait ...` to wait, or write to another directory."
        ) from None
    (path / HOLDER_FILE).write_text(f"pid {os.getpid()} ({' '.join(sys.argv[:3])[:120]})\n", encoding="utf-8")
    _HELD[path] = lock
    return path


def make_dir(path: Path) -> None:
    """Create the output folder ``path`` (and its parents) if missing.

    Raises:
        RunDirError: ``path`` or a folder above it is a file, or it cannot be created or
            written (permissions, a read-only file system); one line naming the path.
    """
    from eclip.errors import RunDirError

    for above in (path, *path.parents):
        if above.exists():
            if not above.is_dir():
                what = "is a file" if above == path else f"is below {above}, which is a file"
                raise RunDirError(f"{path}: {what}, not a folder; give --out a folder path (new or an earlier run's).")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(
            f"{path}: cannot create this folder ({exc.strerror}); give --out a folder you can write."
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirError(f"{path}: this folder is read-only for you; give --out a folder you can write.")


def unlock_dir(folder: str | os.PathLike[str]) -> None:
    """Release what :func:`lock_dir` took (the last release frees the directory)."""
    path = Path(folder).resolve()
    lock = _HELD.get(path)
    if lock is None:
        return
    lock.release()
    if not lock.is_locked:
        _HELD.pop(path, None)


@contextlib.contextmanager
def locked(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """``with locked(dir):`` hold the directory's lock (:func:`lock_dir`) for the block."""
    path = lock_dir(folder)
    try:
        yield path
    finally:
        unlock_dir(path)


def refuse_overwrite(target: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Refuse to write ``target`` over one of a command's ``inputs`` (its catalog, gold file,
    label file...): no command writes over a file it reads.

    Args:
        target: the output file a user named. inputs: the files the command reads (``None``
            entries are skipped).

    Raises:
        InputFileError: ``target`` is one of them (the same file, however named).
    """
    from eclip.errors import InputFileError

    out = Path(target)
    if not out.exists():
        return
    for given in inputs:
        if given is not None and Path(given).exists() and out.samefile(given):
            raise InputFileError(
                f"{out}: is an input of this command (a catalog or a file it reads); eclip never writes over its "
                "inputs. Choose another output path."
            )


def current_umask() -> int:
    """This process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(path: str | os.PathLike[str]) -> None:
    """Give ``path`` the mode a plain ``open`` / ``mkdir`` would have (``0o666`` / ``0o777``
    less the umask): ``tempfile`` makes files 0600 and folders 0700, which an atomic rename
    would otherwise hand on to every output, unreadable to colleagues on a shared machine."""
    p = Path(path)
    os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.

    Raises:
        RunDirError: ``path`` is a folder, or its folder cannot be created or written.
    """
    from eclip.errors import RunDirError

    target = Path(path)
    if target.is_dir():
        raise RunDirError(f"{target}: is a folder; name a file to write (e.g. {target / target.name}.csv).")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise RunDirError(
            f"{target}: cannot write here ({exc.strerror}: {exc.filename}); choose a path in a folder you can write."
        ) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask_mode(tmp_path)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` atomically (zstd-compressed Parquet)."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)
    return Path(path)


#: Leading characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: The guard's own mark: a text cell that starts with it gets one more, so that a cell written
#: as ``'=x`` by the guard and one that was ``'=x`` in the catalog stay apart (escape the escape).
GUARD = "'"
_GUARDED = "[=+\\-@\t\r']"  # FORMULA_START and GUARD as a regex class, for polars' string tests


def neutralise(text: str) -> str:
    """``text`` safe to open in a spreadsheet: a leading formula character, or a leading
    :data:`GUARD`, gets a :data:`GUARD` in front. One-to-one: :func:`restore` undoes it exactly
    (``=x`` -> ``'=x``, ``'=x`` -> ``''=x``, ``'a`` -> ``''a``)."""
    return GUARD + text if text.startswith((*FORMULA_START, GUARD)) else text


def restore(text: str) -> str:
    """The text :func:`neutralise` was given (one leading :data:`GUARD` dropped where it
    guards a formula character or another :data:`GUARD`; anything else is left as written)."""
    return text[1:] if text.startswith(GUARD) and text[1:].startswith((*FORMULA_START, GUARD)) else text


def neutralise_text_columns(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with :func:`neutralise` applied to every text cell (vectorised)."""
    return df.with_columns(
        pl.when(pl.col(c).str.contains(f"^{_GUARDED}")).then(pl.lit(GUARD) + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c, dtype in df.schema.items()
        if dtype == pl.String
    )


def restore_text_columns(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with every text cell as it was before :func:`neutralise_text_columns`
    (:func:`restore`, vectorised)."""
    return df.with_columns(
        pl.when(pl.col(c).str.contains(f"^{GUARD}{_GUARDED}"))
        .then(pl.col(c).str.slice(1))
        .otherwise(pl.col(c))
        .alias(c)
        for c, dtype in df.schema.items()
        if dtype == pl.String
    )


def write_csv(df: pl.DataFrame, path: str | os.PathLike[str], for_people: bool = False) -> Path:
    """Write ``df`` to ``path`` atomically as CSV with a header.

    Args:
        for_people: a file people open in a spreadsheet (review and label files, query
            results): every text cell that would start a formula is neutralised
            (:func:`neutralise_text_columns`); eclip's readers of such files restore them
            (:func:`restore_text_columns`).
    """
    if for_people:
        df = neutralise_text_columns(df)
    with atomic_path(path) as tmp:
        df.write_csv(tmp)
    return Path(path)


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", "utf-8")
    return Path(path)


def save_npy(array: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Save ``array`` to ``path`` (``.npy``) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    return Path(path)


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Load an ``.npy`` file written by :func:`save_npy` (no pickles)."""
    return np.load(path, allow_pickle=False)


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON object; an absent file reads as ``{}``.

    Raises:
        InputFileError: the file is not UTF-8 JSON (cut short, edited, or another kind of
            file), or holds something other than an object; one line naming the file and
            where the parser stopped.
    """
    from eclip.errors import InputFileError

    p = Path(path)
    if not p.exists():
        return {}
    try:
        value = json.loads(p.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{p}: not valid JSON ({exc.msg}: line {exc.lineno}, column {exc.colno}); the file was cut short or "
            "edited. Write it again with the command that made it."
        ) from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{p}: not a UTF-8 JSON file (byte {exc.start}); is it the right file?") from None
    if not isinstance(value, dict):
        raise InputFileError(f"{p}: holds a JSON {type(value).__name__}, not an object; is it the right file?")
    return value


def fingerprint(*parts: Any) -> str:
    """A stable 16-hex-digit SHA-256 digest of JSON-serialisable ``parts``."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def texts_digest(texts: list[str]) -> str:
    """SHA-256 digest (16 hex digits) of a list of strings, order-sensitive."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]
