"""Read a catalog dump (CSV, TSV, Parquet, JSONL/NDJSON) into a polars DataFrame.

Every value is read as text where the format allows it (CSV, TSV), so that ids such as
``00123`` keep their leading zeros; typed formats (Parquet, JSONL) keep their types and are
checked column by column in :mod:`eclip.catalog.schema`.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from eclip.errors import CatalogError

#: File suffix -> format name.
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".txt": "csv",
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


#: Delimiters a ``.csv`` / ``.txt`` file is sniffed for.
DELIMITERS = ",;\t|"
#: Bytes read to sniff a delimiter and an encoding.
SNIFF_BYTES = 1 << 16
#: Encodings tried, in order, when a file is not UTF-8 (cp1252 is the usual Windows export;
#: latin-1 decodes any byte, so it is the last resort).
FALLBACK_ENCODINGS = ("cp1252", "latin-1")


@dataclass(frozen=True)
class Dialect:
    """How a table file was read: format, delimiter (CSV) and encoding (CSV), and whether
    the delimiter and encoding were detected or given."""

    format: str
    sep: str | None = None
    encoding: str | None = None
    detected: bool = True

    def as_dict(self) -> dict:
        return {"format": self.format, "sep": self.sep, "encoding": self.encoding, "detected": self.detected}


def given_dialect(recorded: dict | None) -> dict:
    """``{"sep", "encoding"}`` to read a catalog again as a run read it, when the run was
    told them (``--sep``, ``--encoding``); ``{}`` when they were sniffed (sniffing again
    gives the same)."""
    if not recorded or recorded.get("detected", True):
        return {}
    return {"sep": recorded.get("sep"), "encoding": recorded.get("encoding")}


def _is_utf8(p: Path) -> bool:
    """Whether the whole file decodes as UTF-8 (read in chunks, nothing kept)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with p.open("rb") as f:
        try:
            while chunk := f.read(1 << 24):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def sniff_encoding(p: Path) -> str:
    """The encoding of a text file: ``utf-8-sig`` / ``utf-16`` by their byte-order marks,
    ``utf-8`` when every byte decodes as UTF-8, else the first of
    :data:`FALLBACK_ENCODINGS` that decodes the file."""
    with p.open("rb") as f:
        head = f.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if _is_utf8(p):
        return "utf-8"
    raw = p.read_bytes()
    for enc in FALLBACK_ENCODINGS:
        try:
            raw.decode(enc)
            return enc
        except UnicodeDecodeError:
            continue
    return "latin-1"  # pragma: no cover - latin-1 decodes every byte


def sniff_delimiter(sample: str, default: str = ",") -> str:
    """The delimiter of a CSV sample among :data:`DELIMITERS` (``csv.Sniffer``, then the
    most frequent one in the header line), else ``default``."""
    lines = sample.splitlines()[:50]
    if not lines:
        return default
    text = "\n".join(lines)
    try:
        return csv.Sniffer().sniff(text, delimiters=DELIMITERS).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] > 0 else default


def _read_csv(p: Path, fmt: str, sep: str | None, encoding: str | None) -> tuple[pl.DataFrame, Dialect]:
    compressed = p.suffix.lower() in {".gz", ".zst"}
    detected = sep is None and encoding is None
    if compressed:  # polars decompresses; no sniffing inside archives
        sep = sep or ("\t" if fmt == "tsv" else ",")
        df = pl.read_csv(p, separator=sep, infer_schema=False, quote_char='"', encoding="utf8-lossy")
        return df, Dialect(fmt, sep, encoding or "utf-8", detected)
    enc = encoding or sniff_encoding(p)
    try:
        with p.open("r", encoding=enc, newline="") as f:
            sample = f.read(SNIFF_BYTES)
    except LookupError:
        raise CatalogError(f"{p}: unknown encoding {enc!r}; pass a Python codec name such as utf-8, cp1252, latin-1 or utf-16 to --encoding.") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{p}: does not decode as {enc} (byte {exc.start}); pass the file's encoding with --encoding.") from None
    if sep is None:
        sep = "\t" if fmt == "tsv" else sniff_delimiter(sample)
    if enc in ("utf-8", "utf-8-sig"):
        df = pl.read_csv(p, separator=sep, infer_schema=False, quote_char='"', encoding="utf8")
    else:
        data = p.read_text(encoding=enc).encode("utf-8")
        df = pl.read_csv(io.BytesIO(data), separator=sep, infer_schema=False, quote_char='"')
    return df, Dialect(fmt, sep, enc, detected)


def read_table_with_dialect(path: str | Path, sep: str | None = None, encoding: str | None = None) -> tuple[pl.DataFrame, Dialect]:
    """Read the whole table at ``path``, and say how it was read.

    CSV and TSV files are sniffed: the encoding (:func:`sniff_encoding`: byte-order marks,
    UTF-8, else cp1252 / latin-1) and, for ``.csv``, the delimiter among ``,`` ``;`` tab
    ``|`` (:func:`sniff_delimiter`). ``sep`` and ``encoding`` override the sniffing.

    Returns:
        ``(rows in file order, dialect)``. CSV/TSV columns are all ``pl.String``.

    Raises:
        CatalogError: the file is missing, is a folder, has an unknown suffix, is empty, has
            a header and no rows, or cannot be parsed (the message carries the parser's
            reason and, for a CSV, the delimiter it looked like).
    """
    p = Path(path)
    if not p.exists():
        raise CatalogError(f"{p}: catalog file not found. Check the path (relative paths start at {Path.cwd()}).")
    if p.is_dir():
        raise CatalogError(f"{p}: is a folder; pass the catalog file inside it (.csv, .parquet or .jsonl).")
    fmt = detect_format(p)
    if p.stat().st_size == 0:
        raise CatalogError(f"{p}: the file is empty; a catalog needs a header and at least one row.")
    dialect = Dialect(fmt)
    try:
        if fmt in {"csv", "tsv"}:
            df, dialect = _read_csv(p, fmt, sep, encoding)
        elif fmt == "parquet":
            df = pl.read_parquet(p)
        else:
            df = pl.read_ndjson(p, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatalogError(f"{p}: cannot be read as {fmt.upper()}: {reason}") from exc
    if df.width == 0:
        raise CatalogError(f"{p}: no columns found; is it really {fmt.upper()}?")
    if df.height == 0:
        raise CatalogError(f"{p}: no rows (a header only: {', '.join(df.columns)}); a catalog needs at least one row.")
    return df, dialect


def read_table(path: str | Path, sep: str | None = None, encoding: str | None = None) -> pl.DataFrame:
    """The rows of the table at ``path`` (see :func:`read_table_with_dialect`).

    Raises:
        CatalogError: as :func:`read_table_with_dialect`.
    """
    return read_table_with_dialect(path, sep, encoding)[0]
