"""Validate a catalog table and derive the id and text of every row.

Row numbers in messages are 1-based data rows (the header is not counted); in a CSV file,
data row ``r`` is on line ``r + 1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from eclip.catalog.reader import Dialect, given_dialect, read_table_with_dialect
from eclip.errors import CatalogError

#: Column names taken as the product title, in order of preference (case-insensitive).
TITLE_COLUMNS = ("title", "name", "productdisplayname", "product_name", "product_title", "productname", "product")
#: Column names taken as the brand, appended after the title (case-insensitive).
BRAND_COLUMNS = ("brand", "manufacturer", "brand_name", "maker")
#: Column names taken as category paths or breadcrumbs ("Beauty & Hygiene > Sexual Wellness"),
#: compared lowercased without ``_``, ``-``, ``.`` or spaces; any other name holding
#: "category", "breadcrumb" or "taxonomy" counts too, unless it ends in "id" or "code".
CATEGORY_COLUMNS = (
    "subcategory",
    "producttype",
    "type",
    "department",
    "articletype",
    "mastercategory",
    "breadcrumb",
    "breadcrumbs",
    "categorypath",
)
#: Column names taken as the price (case-insensitive).
PRICE_COLUMNS = ("price", "sale_price", "list_price", "current_price", "price_value")

_TEXTUAL = (pl.String, pl.Categorical, pl.Enum)
_SCALAR_OK = _TEXTUAL + (
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
    pl.Float32,
    pl.Float64,
    pl.Boolean,
    pl.Null,
)
_WS = re.compile(r"\s+")
#: Invisible characters dropped from texts (zero-width space / joiners, word joiner, BOM,
#: soft hyphen): a title made only of them is an empty title.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200d\u2060\ufeff]")
#: Longest text kept per row, characters; longer texts are cut (and the rows named), since
#: encoders read at most a few hundred tokens and a stray megabyte cell costs memory and time
#: in every later step.
MAX_TEXT_CHARS = 10_000
#: ``--id-col @row``: number the rows 1, 2, ... (data rows, header excluded) for a catalog
#: without an id column; files of labels for it are then matched by row number too.
ROW_ID = "@row"


@dataclass(frozen=True)
class Catalog:
    """A validated catalog.

    Attributes:
        path: the file it was read from.
        table: every column of the file, in file order.
        id_col: the id column's name.
        text_cols: the columns joined (with spaces, in this order) into ``texts``.
        ids: ``n`` distinct ids, as strings, in file order, as written (``" X1"`` and ``"X1"`` are
            two ids).
        texts: ``n`` texts, whitespace-collapsed, invisible characters (zero-width spaces,
            soft hyphens) dropped, cut at :data:`MAX_TEXT_CHARS`; ``""`` where every text
            column is empty.
        empty_rows: 0-based positions of the rows whose text is empty.
        image_col: the column of image references, or ``None``.
        images: ``n`` image references (paths relative to the catalog's folder, or URLs),
            ``None`` where the cell is empty; ``None`` without an image column.
        dialect: how the file was read (format, delimiter, encoding), for the manifest.
    """

    path: Path
    table: pl.DataFrame
    id_col: str
    text_cols: tuple[str, ...]
    ids: list[str]
    texts: list[str]
    empty_rows: list[int] = field(default_factory=list)
    image_col: str | None = None
    images: list[str | None] | None = None
    dialect: Dialect | None = None

    @property
    def root(self) -> Path:
        """The folder relative image paths resolve against: the catalog file's folder."""
        return self.path.resolve().parent

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def usable(self) -> list[int]:
        """0-based positions of the rows with non-empty text (the ones that get matched)."""
        empty = set(self.empty_rows)
        return [i for i in range(len(self.ids)) if i not in empty]


def _find(columns: list[str], wanted: tuple[str, ...]) -> list[str]:
    by_lower = {c.lower(): c for c in columns}
    return [by_lower[w] for w in wanted if w in by_lower]


def pick_text_columns(columns: list[str]) -> list[str]:
    """The default text columns: the first title-like column, then brand/manufacturer columns.

    Returns an empty list when no title-like column exists.
    """
    titles = _find(columns, TITLE_COLUMNS)
    if not titles:
        return []
    return [titles[0], *_find(columns, BRAND_COLUMNS)]


def pick_category_columns(schema: dict[str, pl.DataType]) -> list[str]:
    """The textual columns of ``schema`` (column name -> polars dtype) that hold categories or
    breadcrumbs by name (:data:`CATEGORY_COLUMNS`), in file order."""
    found = []
    for name, dtype in schema.items():
        key = re.sub(r"[\s_.\-]", "", name.lower())
        if dtype not in _TEXTUAL or key.endswith(("id", "ids", "code")):
            continue
        if key in CATEGORY_COLUMNS or any(w in key for w in ("category", "categories", "breadcrumb", "taxonomy")):
            found.append(name)
    return found


def pick_attribute_column(columns: list[str], role: str) -> str | None:
    """The catalog's ``brand`` (:data:`BRAND_COLUMNS`) or ``price`` (:data:`PRICE_COLUMNS`)
    column, or ``None`` when it has none.

    Raises:
        ValueError: ``role`` is neither ``brand`` nor ``price``.
    """
    wanted = {"brand": BRAND_COLUMNS, "price": PRICE_COLUMNS}.get(role)
    if wanted is None:
        raise ValueError(f"unknown attribute role {role!r}; use brand or price")
    found = _find(columns, wanted)
    return found[0] if found else None


def _check_column(path: Path, df: pl.DataFrame, col: str, role: str, flag: str) -> None:
    if col not in df.columns:
        cols = ", ".join(df.columns)
        hint = f" (or {flag} {ROW_ID} to number the rows)" if role == "id" else ""
        raise CatalogError(f"{path}: no {role} column {col!r}. Columns are: {cols}. Choose one with {flag}{hint}.")
    dtype = df.schema[col]
    if not isinstance(dtype, _SCALAR_OK) and dtype not in _SCALAR_OK:
        raise CatalogError(
            f"{path}: column {col!r} has type {dtype}, but the {role} column must hold text or numbers, "
            f"one value per row. Flatten it first or choose another column with {flag}."
        )


def with_row_ids(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with a first column :data:`ROW_ID` of 1-based row numbers (as text)."""
    return df.with_row_index(ROW_ID, offset=1).with_columns(pl.col(ROW_ID).cast(pl.String))


#: Notices already printed by this process (a job may read one catalog twice).
_SAID: set[str] = set()


def _say_once(notice: str | None) -> None:
    """Print ``notice`` (a yellow line) unless this process printed it already."""
    if notice and notice not in _SAID:
        from rich.markup import escape

        from eclip.progress import console

        _SAID.add(notice)
        console.print(f"[yellow]{escape(notice)}[/]", highlight=False)


def _rows(indices: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(i + 1) for i in indices[:limit])
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return f"row{'s' if len(indices) > 1 else ''} {shown}{more}"


def load_catalog(
    path: str | Path,
    id_col: str = "id",
    text_cols: list[str] | None = None,
    image_col: str | None = None,
    sep: str | None = None,
    encoding: str | None = None,
    flags: dict[str, str] | None = None,
) -> Catalog:
    """Read and validate a catalog; build each row's id and text.

    Args:
        path: a ``.csv``, ``.tsv``, ``.parquet`` or ``.jsonl``/``.ndjson`` file.
        id_col: the column with a unique id per row, or :data:`ROW_ID` (``@row``) to number
            the rows from 1.
        text_cols: columns joined into the text that is embedded; ``None`` picks them by name
            (see :func:`pick_text_columns`).
        image_col: column of image paths or URLs, read later by :mod:`eclip.catalog.images`.
        sep, encoding: a CSV's delimiter and encoding; ``None`` sniffs them
            (:func:`eclip.catalog.reader.read_table_with_dialect`).
        flags: the command's option for each role the messages name, when it is not
            ``--id-col`` / ``--text-cols`` / ``--image-col`` (``{"id": "--left-id-col"}``).

    Raises:
        CatalogError: the file is missing or unreadable; the id or a text column is missing or
            not scalar; the id column holds floats; an id is empty or repeated; no text
            column can be found by name.
    """
    p = Path(path)
    df, dialect = read_table_with_dialect(p, sep, encoding)
    _say_once(dialect.notice(p))
    if id_col == ROW_ID:
        if ROW_ID in df.columns:
            raise CatalogError(
                f"{p}: a column is named {ROW_ID!r}, which --id-col reserves for row numbers; rename it."
            )
        df = with_row_ids(df)
    flag = {"id": "--id-col", "text": "--text-cols", "image": "--image-col", **(flags or {})}
    _check_column(p, df, id_col, "id", flag["id"])
    if text_cols is None:
        text_cols = pick_text_columns([c for c in df.columns if c != id_col])
        if not text_cols:
            cols = ", ".join(df.columns)
            raise CatalogError(
                f"{p}: no title-like column found (looked for {', '.join(TITLE_COLUMNS)}). "
                f"Columns are: {cols}. Name the text columns with {flag['text']}."
            )
    if not text_cols:
        raise CatalogError(f"{p}: {flag['text']} is empty; name at least one column.")
    for col in text_cols:
        _check_column(p, df, col, "text", flag["text"])
    images = None
    if image_col is not None:
        _check_column(p, df, image_col, "image", flag["image"])
        if df.schema[image_col] not in _TEXTUAL and df.schema[image_col] != pl.Null:
            raise CatalogError(
                f"{p}: column {image_col!r} has type {df.schema[image_col]}; the image column must hold paths or URLs as text."
            )
        images = [v.strip() if v and v.strip() else None for v in df.get_column(image_col).cast(pl.String).to_list()]

    if df.schema[id_col] in (pl.Float32, pl.Float64):
        values = df.get_column(id_col)
        example = next((v for v in values.to_list() if v is not None), None)
        raise CatalogError(
            f"{p}: column {id_col!r} holds floating-point numbers (e.g. {example!r} in row "
            f"{values.to_list().index(example) + 1}), which print as '1.0' and lose digits past 2**53. "
            f"Write the ids as integers or text."
        )
    ids_series = df.get_column(id_col).cast(pl.String)  # as written: ' X1' and 'X1' are two ids
    missing = ids_series.is_null() | (ids_series.str.strip_chars() == "")
    if missing.any():
        bad = missing.arg_true().to_list()
        raise CatalogError(f"{p}: column {id_col!r} is empty in {_rows(bad)}. Every row needs an id.")
    ids = ids_series.to_list()
    dup = ids_series.is_duplicated()
    if dup.any():
        bad = dup.arg_true().to_list()
        first = ids[bad[0]]
        same = [i for i in bad if ids[i] == first]
        n_dup = ids_series.filter(dup).n_unique()
        raise CatalogError(
            f"{p}: column {id_col!r} has {n_dup} repeated id{'s' if n_dup > 1 else ''}; "
            f"e.g. {first!r} is in {_rows(same)}. Ids must be unique: deduplicate them or pick "
            f"another column with {flag['id']}."
        )

    parts = [df.get_column(c).cast(pl.String).fill_null("") for c in text_cols]
    texts = [_WS.sub(" ", _INVISIBLE.sub("", " ".join(vals))).strip() for vals in zip(*(s.to_list() for s in parts))]
    long_rows = [i for i, t in enumerate(texts) if len(t) > MAX_TEXT_CHARS]
    if long_rows:
        from eclip.progress import console

        longest = max(len(texts[i]) for i in long_rows)
        console.print(
            f"[yellow]{p}: {_rows(long_rows)} ha{'ve' if len(long_rows) > 1 else 's'} text longer than "
            f"{MAX_TEXT_CHARS:,} characters (up to {longest:,}); only the first {MAX_TEXT_CHARS:,} are used.[/]"
        )
        for i in long_rows:
            texts[i] = texts[i][:MAX_TEXT_CHARS]
    empty = [i for i, t in enumerate(texts) if not t]
    return Catalog(
        path=p,
        table=df,
        id_col=id_col,
        text_cols=tuple(text_cols),
        ids=ids,
        texts=texts,
        empty_rows=empty,
        image_col=image_col,
        images=images,
        dialect=dialect,
    )


def load_recorded_catalog(inputs: dict, images: bool = False) -> Catalog:
    """The catalog a run read, read again as the run read it: ``inputs`` is the run manifest's
    record of it (``catalog``, ``id_col``, ``text_cols``, ``image_col``, ``dialect``), so a file
    the run was told the delimiter or encoding of (``--sep``, ``--left-encoding``, ...) is not
    sniffed again (:func:`eclip.catalog.reader.given_dialect`).

    Args:
        inputs: one catalog's record in a run manifest. images: read its image column too.

    Raises:
        CatalogError: as :func:`load_catalog` (callers check first that the file still exists,
            to say which run needs it).
    """
    return load_catalog(
        inputs["catalog"],
        inputs.get("id_col") or "id",
        inputs.get("text_cols"),
        inputs.get("image_col") if images else None,
        **given_dialect(inputs.get("dialect")),
    )
