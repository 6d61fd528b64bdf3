"""Catalog input: read CSV, Parquet and JSONL dumps and turn rows into ids and texts."""

from eclip.catalog.reader import FORMATS, read_table
from eclip.catalog.schema import Catalog, load_catalog, pick_text_columns

__all__ = ["FORMATS", "Catalog", "load_catalog", "pick_text_columns", "read_table"]
