"""Catalog input: read CSV, Parquet and JSONL dumps and turn rows into ids and texts."""

from eclip.catalog.reader import FORMATS, given_dialect, read_table
from eclip.catalog.schema import (
    ROW_ID,
    Catalog,
    load_catalog,
    load_recorded_catalog,
    pick_attribute_column,
    pick_category_columns,
    pick_text_columns,
    with_row_ids,
)

__all__ = [
    "FORMATS",
    "given_dialect",
    "ROW_ID",
    "Catalog",
    "load_catalog",
    "load_recorded_catalog",
    "pick_attribute_column",
    "pick_category_columns",
    "pick_text_columns",
    "read_table",
    "with_row_ids",
]
