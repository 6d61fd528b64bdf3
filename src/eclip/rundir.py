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
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

MANIFEST = "manifest.json"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` atomically (zstd-compressed Parquet)."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)
    return Path(path)


def write_csv(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` atomically as CSV with a header."""
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
    """Read a JSON object; an absent file reads as ``{}``."""
    p = Path(path)
    if not p.exists():
        return {}
    return json.loads(p.read_text("utf-8"))


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
