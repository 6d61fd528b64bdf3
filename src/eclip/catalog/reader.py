"""Read a catalog dump (CSV, TSV, Parquet, JSONL/NDJSON) into a polars DataFrame.

Every value is read as text where the format allows it (CSV, TSV), so that ids such as
``00123`` keep their leading zeros; typed formats (Parquet, JSONL) keep their types and are
checked column by column in :mod:`eclip.catalog.schema`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from eclip.errors import CatalogError

#: File suffix -> format name.
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def detect_format(path: Path) -> str:
    """The format of ``path`` from its suffix (``.csv.gz`` counts as ``.csv``).

    Raises:
        CatalogError: the suffix is not one of :data:`FORMATS`.
    """
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in {".gz", ".zst"}:
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise CatalogError(
            f"{path}: unknown catalog format {suffix or '(no suffix)'!r}. "
            f"Use one of {known} (rename the file to match its content)."
        )
    return FORMATS[suffix]


def read_table(path: str | Path) -> pl.DataFrame:
    """Read the whole table at ``path``.

    Returns:
        The rows in file order. CSV/TSV columns are all ``pl.String``.

    Raises:
        CatalogError: the file is missing, is a folder, has an unknown suffix, is empty,
            or cannot be parsed (the message carries the parser's reason).
    """
    p = Path(path)
    if not p.exists():
        raise CatalogError(f"{p}: catalog file not found. Check the path (relative paths start at {Path.cwd()}).")
    if p.is_dir():
        raise CatalogError(f"{p}: is a folder; pass the catalog file inside it (.csv, .parquet or .jsonl).")
    fmt = detect_format(p)
    if p.stat().st_size == 0:
        raise CatalogError(f"{p}: the file is empty; a catalog needs a header and at least one row.")
    try:
        if fmt in {"csv", "tsv"}:
            df = pl.read_csv(
                p,
                separator="\t" if fmt == "tsv" else ",",
                infer_schema=False,
                quote_char='"',
                encoding="utf8-lossy",
            )
        elif fmt == "parquet":
            df = pl.read_parquet(p)
        else:
            df = pl.read_ndjson(p, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatalogError(f"{p}: cannot be read as {fmt.upper()}: {reason}") from exc
    if df.width == 0:
        raise CatalogError(f"{p}: no columns found; is it really {fmt.upper()}?")
    return df
