"""Per-row attributes the lexical comparisons read: quantities from the titles, brands and
prices from the catalog's columns."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import Catalog, pick_attribute_column
from eclip.encoders.lexical import quantities_of_all
from eclip.errors import EclipError
from eclip.matcher.comparisons import normalise_brand, parse_price


def catalog_attributes(cat: Catalog, brand_col: str | None = None, price_col: str | None = None) -> dict[str, Any]:
    """Per-row quantities (from the titles), normalised brands and prices (from the
    catalog's brand and price columns, when it has them), with the columns used.

    Args:
        brand_col, price_col: ``None``: found by name
            (:func:`eclip.catalog.pick_attribute_column`); ``""``: left out.

    Returns:
        ``{"quantities", "brands"?, "prices"?, "brand_col"?, "price_col"?}``.

    Raises:
        EclipError: a named column is not in the catalog.
    """
    out: dict[str, Any] = {"quantities": quantities_of_all(cat.texts)}
    columns = cat.table.columns
    for role, given in (("brand", brand_col), ("price", price_col)):
        col = pick_attribute_column(columns, role) if given is None else (given or None)
        if col is None:
            continue
        if col not in columns:
            raise EclipError(
                f"{cat.path}: no {role} column {col!r} (columns: {', '.join(columns)}); pass --{role}-col with one of them, or ''."
            )
        values = cat.table[col].cast(pl.String).to_list()
        out[f"{role}_col"] = col
        if role == "brand":
            out["brands"] = [sys.intern(normalise_brand(v)) for v in values]  # one object per brand
        else:
            out["prices"] = np.array([parse_price(v) for v in values], dtype=np.float64)
    return out
