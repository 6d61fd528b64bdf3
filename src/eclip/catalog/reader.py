"""Read a catalog dump (CSV, TSV, Parquet, JSONL/NDJSON) into a polars DataFrame.

Every value is read as text where the format allows it (CSV, TSV), so that ids such as
``00123`` keep their leading zeros; typed formats (Parquet, JSONL) keep their types and are
checked column by column in :mod:`eclip.catalog.schema`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


#: Lines of a mixed file named in messages and manifests (the count is always given).
SHOWN_LINES = 20


@dataclass(frozen=True)
class Dialect:
    """How a table file was read: format, delimiter (CSV) and encoding (CSV, JSONL), and
    whether the delimiter and encoding were detected or given.

    ``not_utf8_lines`` are the 1-based lines of a UTF-8 file that are not UTF-8 (a stray
    cp1252 byte, say), read as ``line_encoding``; every other line was read as UTF-8.
    ``not_utf8_bytes`` shows the first such line's offending bytes."""

    format: str
    sep: str | None = None
    encoding: str | None = None
    detected: bool = True
    not_utf8_lines: tuple[int, ...] = ()
    line_encoding: str | None = None
    not_utf8_bytes: str | None = None

    def as_dict(self) -> dict:
        out: dict[str, Any] = {
            "format": self.format,
            "sep": self.sep,
            "encoding": self.encoding,
            "detected": self.detected,
        }
        if self.not_utf8_lines:
            out["not_utf8_lines"] = {
                "count": len(self.not_utf8_lines),
                "lines": list(self.not_utf8_lines[:SHOWN_LINES]),
                "read_as": self.line_encoding,
            }
        return out

    def notice(self, path: Path) -> str | None:
        """What a user should be told about how ``path`` was decoded, or ``None`` when it was
        plain UTF-8 (or the encoding was given)."""
        if self.not_utf8_lines:
            k = len(self.not_utf8_lines)
            shown = ", ".join(map(str, self.not_utf8_lines[:SHOWN_LINES])) + (" ..." if k > SHOWN_LINES else "")
            return (
                f"{path}: {k} line{'s are' if k > 1 else ' is'} not UTF-8 (line{'s' if k > 1 else ''} {shown}; "
                f"first bytes {self.not_utf8_bytes}): read as {self.line_encoding}, every other line as UTF-8. "
                "Check those lines, or pass --encoding to read the whole file one way."
            )
        if self.detected and self.encoding not in (None, "utf-8", "utf-8-sig"):
            return f"{path} is not UTF-8: read as {self.encoding} (pass --encoding to say otherwise)."
        return None


def given_dialect(recorded: dict | None) -> dict:
    """``{"sep", "encoding"}`` to read a catalog again as a run read it, when the run was
    told them (``--sep``, ``--encoding``); ``{}`` when they were sniffed (sniffing again
    gives the same)."""
    if not recorded or recorded.get("detected", True):
        return {}
    return {"sep": recorded.get("sep"), "encoding": recorded.get("encoding")}


def _bom_encoding(head: bytes) -> str | None:
    """``utf-8-sig`` or ``utf-16`` when ``head`` starts with their byte-order mark."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _decode_lines(raw: bytes) -> tuple[str, str, tuple[int, ...], str | None, str | None]:
    """Decode a file that polars found not to be UTF-8, line by line.

    When some lines are UTF-8 with non-ASCII characters (so the file is UTF-8), only the lines
    that are not UTF-8 are decoded by the first of :data:`FALLBACK_ENCODINGS` that decodes
    them, and named; correct UTF-8 lines are never decoded twice. When no line is UTF-8 beyond
    ASCII, the whole file is in a fallback encoding.

    Returns:
        ``(encoding, text, not_utf8_lines, line_encoding, first_bad_bytes)``; the last three
        are ``((), None, None)`` for a file in one encoding.
    """
    lines = raw.split(b"\n")
    text: list[str] = []
    bad: list[int] = []
    utf8_beyond_ascii = False
    first_bytes: str | None = None
    used: set[str] = set()
    for number, line in enumerate(lines, start=1):
        try:
            text.append(line.decode("utf-8"))
            utf8_beyond_ascii = utf8_beyond_ascii or not line.isascii()
        except UnicodeDecodeError as exc:
            enc, decoded = _decode_fallback(line)
            used.add(enc)
            text.append(decoded)
            bad.append(number)
            if first_bytes is None:
                first_bytes = " ".join(f"0x{b:02x}" for b in line[exc.start : max(exc.end, exc.start + 1)])
    if not utf8_beyond_ascii:
        enc, whole = _decode_fallback(raw)
        return enc, whole, (), None, None
    line_enc = "latin-1" if "latin-1" in used else FALLBACK_ENCODINGS[0]
    return "utf-8", "\n".join(text), tuple(bad), line_enc, first_bytes


def _decode_fallback(raw: bytes) -> tuple[str, str]:
    """``(encoding, text)``: ``raw`` decoded by the first of :data:`FALLBACK_ENCODINGS` that
    decodes it (latin-1 decodes every byte)."""
    for enc in FALLBACK_ENCODINGS:
        try:
            return enc, raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return "latin-1", raw.decode("latin-1")  # pragma: no cover - latin-1 is in the list


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
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] > 0 else default


def _delimiter(sep: str | None, fmt: str, sample: str) -> str:
    """The delimiter to read with: the one given, a tab for TSV, else sniffed from ``sample``."""
    return sep or ("\t" if fmt == "tsv" else sniff_delimiter(sample))


def _read_csv(p: Path, fmt: str, sep: str | None, encoding: str | None) -> tuple[pl.DataFrame, Dialect]:
    """Read a CSV/TSV: the encoding from its byte-order mark, else UTF-8 (checked by polars
    as it reads, so a UTF-8 file is read once), else the first fallback that decodes it."""
    compressed = p.suffix.lower() in {".gz", ".zst"}
    detected = sep is None and encoding is None
    if compressed:  # polars decompresses; no sniffing inside archives
        sep = sep or ("\t" if fmt == "tsv" else ",")
        df = pl.read_csv(p, separator=sep, infer_schema=False, quote_char='"', encoding="utf8-lossy")
        return df, Dialect(fmt, sep, encoding or "utf-8", detected)
    with p.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    enc = encoding or _bom_encoding(head) or "utf-8"
    try:
        codec = codecs.lookup(enc).name
    except LookupError:
        raise CatalogError(
            f"{p}: unknown encoding {enc!r}; pass a Python codec name such as utf-8, cp1252, latin-1 or utf-16 to --encoding."
        ) from None

    if codec in ("utf-8", "utf-8-sig"):
        sep = _delimiter(sep, fmt, head.decode("utf-8", errors="ignore"))
        try:
            return pl.read_csv(p, separator=sep, infer_schema=False, quote_char='"', encoding="utf8"), Dialect(
                fmt, sep, enc, detected
            )
        except pl.exceptions.ComputeError as exc:
            if "utf-8" not in str(exc).lower():
                raise
            if encoding is not None:
                raise CatalogError(
                    f"{p}: does not decode as {enc} ({str(exc).splitlines()[0]}); pass the file's encoding with --encoding."
                ) from None
        enc, text, lines, line_enc, first = _decode_lines(p.read_bytes())
        df = pl.read_csv(io.BytesIO(text.encode("utf-8")), separator=sep, infer_schema=False, quote_char='"')
        return df, Dialect(fmt, sep, enc, detected, lines, line_enc, first)
    else:
        try:
            text = p.read_bytes().decode(enc)
        except UnicodeDecodeError as exc:
            raise CatalogError(
                f"{p}: does not decode as {enc} (byte {exc.start}); pass the file's encoding with --encoding."
            ) from None
        sep = _delimiter(sep, fmt, text[:SNIFF_BYTES])
    df = pl.read_csv(io.BytesIO(text.encode("utf-8")), separator=sep, infer_schema=False, quote_char='"')
    return df, Dialect(fmt, sep, enc, detected)


def _read_jsonl(p: Path, encoding: str | None) -> tuple[pl.DataFrame, Dialect]:
    """Read JSON Lines: UTF-8, with or without a byte-order mark (UTF-8 or UTF-16), or the
    encoding given."""
    with p.open("rb") as f:
        head = f.read(4)
    enc = encoding or _bom_encoding(head)
    if enc is None or (codecs.lookup(enc).name == "utf-8" and not head.startswith(codecs.BOM_UTF8)):
        return pl.read_ndjson(p, infer_schema_length=None), Dialect("jsonl", None, "utf-8", encoding is None)
    try:
        text = p.read_bytes().decode(enc)
    except LookupError:
        raise CatalogError(f"{p}: unknown encoding {enc!r}; pass a Python codec name to --encoding.") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(
            f"{p}: does not decode as {enc} (byte {exc.start}); pass the file's encoding with --encoding."
        ) from None
    text = text.removeprefix("\ufeff")
    data = io.BytesIO(text.encode("utf-8"))
    return pl.read_ndjson(data, infer_schema_length=None), Dialect("jsonl", None, enc, encoding is None)


def _locate_problem(p: Path, fmt: str, sep: str | None, encoding: str | None) -> str | None:
    """After the parser failed: the first line of ``p`` that is wrong, in words, found by a
    slower line-by-line pass (``csv.reader`` / ``json.loads``); ``None`` when that pass finds
    nothing or cannot run (a compressed file, Parquet)."""
    if fmt == "parquet" or p.suffix.lower() in {".gz", ".zst"}:
        return None
    try:
        raw = p.read_bytes()
        enc = encoding or _bom_encoding(raw[:4]) or "utf-8"
        text = raw.decode(enc, errors="replace")
    except (OSError, LookupError):
        return None
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                return f"line {number} is not valid JSON: {exc.msg} (column {exc.colno}). Fix or drop that line."
            if not isinstance(value, dict):
                return f'line {number} is a JSON {type(value).__name__}, not an object; each line must be one product as {{"column": value, ...}}.'
        return None
    sep = _delimiter(sep, fmt, text[:SNIFF_BYTES])
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a long description is a value, not an error
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), delimiter=sep, quotechar='"')
    try:
        header = next(reader)
        for row in reader:
            if len(row) > len(header):
                return (
                    f"line {reader.line_num} has {len(row)} fields but the header has {len(header)} "
                    f"(a {sep!r} inside a value that is not quoted?). Quote that value or fix the line."
                )
            if row and len(row) < len(header):
                return (
                    f"line {reader.line_num} has {len(row)} field{'s' if len(row) > 1 else ''} but the header has "
                    f"{len(header)} (a line cut short, or broken in two?). Fix the line, or add the missing {sep!r}s."
                )
    except csv.Error as exc:
        return f"line {reader.line_num}: {exc}"
    return None


def read_table_with_dialect(
    path: str | Path, sep: str | None = None, encoding: str | None = None
) -> tuple[pl.DataFrame, Dialect]:
    """Read the whole table at ``path``, and say how it was read.

    CSV and TSV files are sniffed: the encoding (byte-order marks, UTF-8, else cp1252 /
    latin-1) and, for ``.csv``, the delimiter among ``,`` ``;`` tab
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
            df, dialect = _read_jsonl(p, encoding)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        where = _locate_problem(p, fmt, sep or dialect.sep, encoding or dialect.encoding)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatalogError(f"{p}: cannot be read as {fmt.upper()}: {where or reason}") from exc
    if df.width == 0:
        raise CatalogError(f"{p}: no columns found; is it really {fmt.upper()}?")
    if fmt in {"csv", "tsv"} and df.height and df.get_column(df.columns[-1]).null_count():
        # polars pads a short row with nulls: only a line-by-line pass can tell one from empty cells
        short = _locate_problem(p, fmt, dialect.sep, dialect.encoding)
        if short:
            raise CatalogError(f"{p}: cannot be read as {fmt.upper()}: {short}")
    if df.height == 0:
        raise CatalogError(f"{p}: no rows (a header only: {', '.join(df.columns)}); a catalog needs at least one row.")
    return df, dialect


def read_table(path: str | Path, sep: str | None = None, encoding: str | None = None) -> pl.DataFrame:
    """The rows of the table at ``path`` (see :func:`read_table_with_dialect`).

    Raises:
        CatalogError: as :func:`read_table_with_dialect`.
    """
    return read_table_with_dialect(path, sep, encoding)[0]
