"""The data a report renders (:class:`ReportContent`), shared by the readers of each kind
of run (:mod:`eclip.report.content`, :mod:`eclip.report.links`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eclip.report.order import DEFAULT_ORDER


@dataclass
class ReportContent:
    """Everything one report renders.

    Attributes:
        job: ``dedupe``, ``cluster`` or ``link``. manifest: the run's manifest.
        groups: gallery entries in ``order``: ``{"gid", "size", "score", "certainty", "label",
            "terms", "members": [[row, id, title, value]], "edges": [[i, j, score, linked_by,
            detail]], "more"}``; ``row`` indexes ``thumbs``, ``i, j`` index ``members``;
            ``certainty`` (float or ``None``) is what ``order`` sorts on
            (:mod:`eclip.report.order`): a dedupe group's weakest accepted link, a cluster's
            cohesion, a link's own value, on ``axis``; ``score``: a dedupe group's strongest
            accepted link on ``axis`` (the grouping's scores, as ``groups.parquet`` holds
            them), a cluster's cohesion, a link's raw score. A dedupe member's ``value`` is
            its best accepted link on ``axis``; a dedupe group's edges come weakest first.
        thumbs: ``{row: "data:image/jpeg;base64,..."}``.
        scores: ``(p,)`` pair scores (dedupe) or membership probabilities (cluster) for the
            histogram; matched: which of them are matches / clustered rows.
        sizes: ``(g,)`` group or cluster sizes.
        curve: labelled runs: ``[(threshold, precision, recall, f1)]``; metrics: their scores.
        notes: lines shown under the header (caps hit, images missing).
        axis: ``match_probability`` or ``score``: what the run's threshold applies to, and so
            what ``certainty`` and the dedupe curve's thresholds are measured on.
        order: one of :data:`eclip.report.order.ORDERS`.
    """

    job: str
    manifest: dict[str, Any]
    groups: list[dict[str, Any]]
    thumbs: dict[int, str]
    scores: np.ndarray
    matched: np.ndarray
    sizes: np.ndarray
    curve: list[tuple[float, float, float, float]] | None = None
    metrics: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    axis: str = "score"
    order: str = DEFAULT_ORDER


def pair_detail(row: dict[str, Any]) -> str:
    """A pair's signals in a line (``probability 0.97 · text 1.29 · emb 0.99 · ...``); missing ones left out."""
    names = (
        ("match_probability", "probability"),
        ("text_score", "text"),
        ("cos_embedding", "emb"),
        ("cos_tfidf", "tfidf"),
        ("code", "code"),
        ("cos_image", "image"),
        ("cos_fused", "fused"),
        ("phash_distance", "pHash"),
    )
    parts = [
        f"{label} {row[c]:.2f}" if c != "phash_distance" else f"{label} {int(row[c])} bits"
        for c, label in names
        if row.get(c) is not None
    ]
    return " · ".join(parts)
