"""Read a catalog column of precomputed 64-bit perceptual hashes (pHash) into eclip's code layout.

Scraped catalogs often ship one pHash per image, e.g. Shopee's ``image_phash`` column of 16 hex
digits (``94974f937d4c2433``), or the same 64 bits as an integer (unsigned, or signed when a
database stored them in a BIGINT). :func:`parse_phash_column` turns such a column into the
``(n, 8)`` uint8 codes that :func:`eclip.encoders.phash.phash_bytes` computes from images, so a
catalog's own hashes can stand in for, or sit beside, eclip's (:func:`eclip.index.binary.hamming_pairs`).

Byte order: ``imagehash`` prints a hash (``str(imagehash.phash(img))``) as the 64 bits of its
flattened 8x8 array read as one big-endian number, first bit most significant, in 16 hex digits
(``imagehash._binary_array_to_hex``; ``imagehash.hex_to_hash`` reads it back). eclip packs the
same flattened bits with ``numpy.packbits``, also first bit most significant. So code byte ``k``
is hex digits ``2k, 2k+1`` (``bytes.fromhex``), and an integer ``v`` is ``v.to_bytes(8, "big")``
of its unsigned 64-bit value (a negative signed value is taken in two's complement,
``v % 2**64``).

Row numbers in messages are 1-based data rows (the header is not counted), as in
:mod:`eclip.catalog.schema`; in a CSV file, data row ``r`` is on line ``r + 1``.

References: C. Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions",
master's thesis, Upper Austria University of Applied Sciences, 2010; the ``imagehash`` library,
https://github.com/JohannesBuchner/imagehash (``phash``, ``hex_to_hash``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from eclip.errors import CatalogError

#: Bytes per code, as :data:`eclip.encoders.phash.PHASH_BYTES` (not imported: that module pulls in
#: imagehash and Pillow, which reading a column does not need).
_CODE_BYTES = 8
_HEX_DIGITS = 2 * _CODE_BYTES
_HEX = rf"^[0-9a-f]{{{_HEX_DIGITS}}}$"
_DECIMAL = r"^[+-]?[0-9]+$"
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
_EXAMPLE = "94974f937d4c2433"
_ROWS = "data rows from 1, header not counted"
_SIGNED_64 = (pl.Int8, pl.Int16, pl.Int32, pl.Int64)
_UNSIGNED_64 = (pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_TEXTUAL = (pl.String, pl.Categorical, pl.Enum)


def parse_phash_column(table: pl.DataFrame, column: str, source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit pHash of every row of ``table[column]``, packed as eclip packs its own.

    Accepted cells:

    * text of exactly 16 hex digits, any case, an optional ``0x`` prefix, surrounding
      whitespace ignored (``str(imagehash.phash(img))`` gives exactly this);
    * a 64-bit integer, unsigned (``0 .. 2**64 - 1``) or signed (``-2**63 .. 2**63 - 1``, taken
      in two's complement), in an integer column or as decimal text (optional sign);
    * null, or text that is empty or whitespace only: no pHash for that row.

    A text column is read one way throughout: as hex when every non-empty cell is 16 hex digits
    (with or without ``0x``), else as decimal integers when every one is. A column mixing the two
    is an error at the first cell of the minority form (hex as soon as a cell has a letter
    ``a``-``f`` or ``0x``). So a decimal column is never misread as hex because some of its
    numbers happen to have 16 digits, unless all of them do.

    Args:
        table: the catalog rows, in file order.
        column: the pHash column.
        source: the catalog file, named in error messages.

    Returns:
        ``(codes, present)``: ``(n, 8)`` uint8 codes, ``numpy.packbits`` bit order, the layout of
        :func:`eclip.encoders.phash.phash_bytes` and :func:`eclip.index.binary.hamming_pairs`
        (all zero where absent), and ``(n,)`` bool, ``True`` where the row has a pHash.

    Raises:
        CatalogError: ``column`` is not in ``table`` (the message lists the columns); its type is
            neither text nor integer (floats are refused: they hold 53 bits, not 64); or a cell is
            not a pHash (bad hex, a number outside 64 bits, a mix of hex and decimal). A bad cell's
            message names the file, the 1-based data row, the column and the value, on one line.
    """
    p = Path(source)
    if column not in table.columns:
        cols = ", ".join(table.columns)
        raise CatalogError(f"{p}: no pHash column {column!r}. Columns are: {cols}. Name one of those.")
    series = table.get_column(column)
    dtype = series.dtype
    n = len(series)
    if dtype == pl.Null:
        return np.zeros((n, _CODE_BYTES), np.uint8), np.zeros(n, bool)
    if dtype.is_float():
        raise CatalogError(
            f"{p}: column {column!r} has type {dtype}; a pHash column must hold 16 hex digits as text or "
            f"64-bit integers. Floats keep only 53 bits of a 64-bit hash: write the hashes as text or integers."
        )
    if dtype.is_integer():
        values, present = _from_integers(p, column, series)
    elif dtype in _TEXTUAL or isinstance(dtype, (pl.Categorical, pl.Enum)):
        values, present = _from_text(p, column, series.cast(pl.String))
    else:
        raise CatalogError(
            f"{p}: column {column!r} has type {dtype}; a pHash column must hold 16 hex digits as text "
            f"(e.g. {_EXAMPLE!r}) or 64-bit integers, one per row."
        )
    codes = values.astype(">u8").view(np.uint8).reshape(n, _CODE_BYTES)
    return np.ascontiguousarray(codes), present


def _bad_cell(path: Path, column: str, index: int, value: object, why: str) -> CatalogError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return CatalogError(
        f"{path}: column {column!r}, row {index + 1} ({_ROWS}): {shown} is not a 64-bit pHash: {why}. "
        f"Fix the cell, or empty it if the row has no pHash."
    )


def _from_integers(path: Path, column: str, series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Unsigned 64-bit values and presence of an integer column."""
    present = series.is_not_null().to_numpy()
    dtype = series.dtype
    if dtype in _SIGNED_64:
        return series.cast(pl.Int64).fill_null(0).to_numpy().astype(np.int64).view(np.uint64), present
    if dtype in _UNSIGNED_64:
        return series.cast(pl.UInt64).fill_null(0).to_numpy().astype(np.uint64), present
    # wider integer types (Int128, UInt128): check the range value by value
    out = np.zeros(len(series), np.uint64)
    for i, v in enumerate(series.to_list()):
        if v is None:
            continue
        if not _INT64_MIN <= v <= _UINT64_MAX:
            raise _bad_cell(path, column, i, v, "it is outside the 64-bit range (-2**63 to 2**64 - 1)")
        out[i] = v % 2**64
    return out, present


def _from_text(path: Path, column: str, series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Unsigned 64-bit values and presence of a text column of hex or decimal integers."""
    text = series.str.strip_chars()
    present_s = text.is_not_null() & (text != "")
    present = present_s.to_numpy()
    norm = text.str.to_lowercase().str.strip_prefix("0x")
    has_prefix = text.str.to_lowercase().str.starts_with("0x")
    hex_ok = (norm.str.contains(_HEX) & present_s).fill_null(False)
    dec_ok = (text.str.contains(_DECIMAL) & ~has_prefix & present_s).fill_null(False)
    n_present = int(present_s.sum())
    n = len(series)
    if n_present == 0:
        return np.zeros(n, np.uint64), present
    if int(hex_ok.sum()) == n_present:
        return _hex_values(norm, hex_ok.to_numpy()), present
    hex_only = hex_ok & ~dec_ok
    if bool(hex_only.any()):
        i = int((present_s & ~hex_ok).arg_true()[0])
        j = int(hex_only.arg_true()[0])
        why = (
            f"expected 16 hex digits (optionally 0x-prefixed) like the rest of the column, "
            f"e.g. {series[j]!r} in row {j + 1}"
        )
        raise _bad_cell(path, column, i, series[i], why)
    bad = present_s & ~dec_ok
    if bool(bad.any()):
        i = int(bad.arg_true()[0])
        why = f"expected 16 hex digits (e.g. {_EXAMPLE!r}, as str(imagehash.phash(img)) prints) or a 64-bit integer"
        raise _bad_cell(path, column, i, series[i], why)
    out = np.zeros(n, np.uint64)
    for i in present_s.arg_true().to_list():
        cell = text[i]
        # a 64-bit value has at most 20 digits; the length check spares int() a huge string
        if len(cell.lstrip("+-").lstrip("0")) > 20 or not _INT64_MIN <= int(cell) <= _UINT64_MAX:
            raise _bad_cell(path, column, i, series[i], "it is outside the 64-bit range (-2**63 to 2**64 - 1)")
        out[i] = int(cell) % 2**64
    return out, present


def _hex_values(norm: pl.Series, ok: np.ndarray) -> np.ndarray:
    """Unsigned 64-bit values of the 16-hex-digit cells of ``norm`` where ``ok`` (0 elsewhere).

    Read as two 32-bit halves, each of which fits ``str.to_integer``'s default Int64.
    """
    filled = norm.zip_with(pl.Series(ok), pl.Series(["0" * _HEX_DIGITS] * len(norm)))
    half = _HEX_DIGITS // 2
    hi = filled.str.slice(0, half).str.to_integer(base=16).to_numpy().astype(np.uint64)
    lo = filled.str.slice(half, half).str.to_integer(base=16).to_numpy().astype(np.uint64)
    return (hi << np.uint64(32)) | lo
