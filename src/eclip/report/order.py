"""In which order a report lists its groups, and on which axis a run's threshold lies.

A reviewer's time is best spent on the groups the run was least sure of, so a report opens on
them: a dedupe group is as certain as its weakest accepted link (the lowest match probability,
or score, of the pairs that hold it together), a cluster as its cohesion, a link as its own
probability or score. Every value is taken on the axis the run's threshold applies to
(``matching.threshold_on`` in its manifest).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
import polars as pl

ReportOrder = Literal["least-certain", "most-certain", "largest"]
#: The orders ``eclip report --order`` offers; the first is the default.
ORDERS: tuple[str, ...] = get_args(ReportOrder)
DEFAULT_ORDER: ReportOrder = "least-certain"
#: How a note names the groups an order keeps first (``--max-groups``).
ORDER_WORDS = {"least-certain": "least certain", "most-certain": "most certain", "largest": "largest"}
#: How the page names each axis.
AXIS_NAMES = {"match_probability": "match probability", "score": "combined score"}


def threshold_axis(manifest: dict[str, Any], probability: np.ndarray | pl.Series | None) -> str:
    """The axis a run's threshold applies to: ``match_probability`` or ``score``.

    Args:
        manifest: the run's manifest; its ``matching.threshold_on`` names the axis (runs
            written before that key existed thresholded the score).
        probability: ``(p,)`` float match probability per pair (NaN or null where unknown),
            or ``None`` when the run wrote none.

    Returns:
        ``match_probability`` when the manifest says so and at least one probability is
        finite; ``score`` otherwise (a probability axis with no probabilities shows nothing).
    """
    if manifest.get("matching", {}).get("threshold_on") != "match_probability" or probability is None:
        return "score"
    values = np.asarray(
        probability.cast(pl.Float64).fill_null(np.nan) if isinstance(probability, pl.Series) else probability,
        dtype=np.float64,
    )
    return "match_probability" if np.isfinite(values).any() else "score"


def order_frame(frame: pl.DataFrame, order: str, gid: str = "gid") -> pl.DataFrame:
    """``frame`` sorted for the report: one row per group with ``size`` (int) and
    ``certainty`` (float, null where nothing measures it: a group joined by must-links alone).

    ``least-certain``: certainty ascending, then size descending; ``most-certain``: certainty
    descending, then size descending; ``largest``: size descending, then certainty ascending.
    Ties end on ``gid`` ascending. A null certainty counts as certain (+inf): last in
    ``least-certain``, first in ``most-certain``. The page's order selector sorts the same way.

    Raises:
        ValueError: ``order`` is not one of :data:`ORDERS`.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown report order {order!r}; choose one of {', '.join(ORDERS)}")
    key = pl.col("certainty").cast(pl.Float64).fill_null(float("inf")).fill_nan(float("inf"))
    frame = frame.with_columns(key.alias("_key"))
    by, desc = {
        "least-certain": (["_key", "size", gid], [False, True, False]),
        "most-certain": (["_key", "size", gid], [True, True, False]),
        "largest": (["size", "_key", gid], [True, False, False]),
    }[order]
    return frame.sort(by, descending=desc).drop("_key")


def rounded(value: float | None, digits: int = 4) -> float | None:
    """``value`` rounded for the page, ``None`` when missing or not finite."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)
