"""A two-tier text match: a cheap model scores every candidate pair, a stronger one only the
pairs the first left uncertain.

A static model (``minilm-static``, tens of thousands of titles/s) proposes and scores all
candidates; the label-free match model (:func:`eclip.matcher.mixture.learn_settings`) turns
their scores into match probabilities. Only the rows of pairs whose probability is neither
near 0 nor near 1 are embedded by the transformer, so its cost follows the hard part of a
catalog rather than its size. This is the retrieve-then-rerank cascade of neural ranking
(e.g. Nogueira et al., "Multi-Stage Document Ranking with BERT", 2019), with the first
stage's own posterior choosing what the second stage sees.

The two tiers' cosines live in different spaces. Where both rows of a pair have a transformer
vector, the pair gets the transformer's cosine; every other pair keeps its static cosine,
mapped into the transformer's scale by an isotonic regression fitted on the pairs that have
both (scikit-learn's ``IsotonicRegression``: monotone, so a static ranking is never
reordered), and the match model is fitted again on the merged column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eclip.errors import EclipError

#: Pairs whose first-tier match probability lies in ``(band, 1 - band)`` are refined.
DEFAULT_BAND = 0.01


@dataclass(frozen=True)
class UncertainRows:
    """The rows the second tier embeds.

    Attributes:
        rows: ``(r,)`` int64 sorted catalog row positions.
        pairs: how many candidate pairs were uncertain.
        capped: whether ``max_rows`` cut the list (the most uncertain pairs were kept).
    """

    rows: np.ndarray
    pairs: int
    capped: bool


def uncertain_rows(
    a: np.ndarray, b: np.ndarray, probability: np.ndarray, band: float = DEFAULT_BAND, max_rows: int | None = None
) -> UncertainRows:
    """The rows of the candidate pairs the first tier is unsure of.

    Args:
        a, b: ``(p,)`` int64 row positions of the candidate pairs.
        probability: ``(p,)`` float32 first-tier match probability (NaN: unknown, skipped).
        band: a pair is uncertain when ``band < probability < 1 - band``.
        max_rows: at most this many rows; pairs are taken from the most uncertain
            (probability nearest 0.5) until the next would pass it.

    Raises:
        EclipError: ``band`` outside ``[0, 0.5)`` or ``max_rows`` below 2.
    """
    if not 0.0 <= band < 0.5:
        raise EclipError(f"the cascade band must be in [0, 0.5), not {band}.")
    if max_rows is not None and max_rows < 2:
        raise EclipError(f"the cascade's row cap must be at least 2, not {max_rows}.")
    p = np.asarray(probability, dtype=np.float64)
    sure = np.isnan(p) | (p <= band) | (p >= 1.0 - band)
    pick = np.flatnonzero(~sure)
    if max_rows is None:
        rows = np.unique(np.concatenate([a[pick], b[pick]]))
        return UncertainRows(rows.astype(np.int64), len(pick), False)
    pick = pick[np.argsort(np.abs(p[pick] - 0.5), kind="stable")]
    ends = np.stack([a[pick], b[pick]], axis=1).ravel()  # pair i's rows at 2i, 2i + 1
    first_seen = np.zeros(len(ends), dtype=bool)
    first_seen[np.unique(ends, return_index=True)[1]] = True
    reached = np.cumsum(first_seen)[1::2]  # distinct rows once pair i is in
    keep = int(np.searchsorted(reached, max_rows, side="right"))
    rows = np.unique(ends[: 2 * keep])
    return UncertainRows(rows.astype(np.int64), len(pick), keep < len(pick))


@dataclass(frozen=True)
class MergedCosines:
    """The title cosines of every candidate pair after the second tier.

    Attributes:
        cosines: ``(p,)`` float32: the second tier's cosine where both rows have its vector,
            else the first tier's mapped into its scale (NaN stays NaN).
        refined: ``(p,)`` bool, the pairs that got the second tier's own cosine.
        calibration_pairs: pairs the isotonic map was fitted on.
    """

    cosines: np.ndarray
    refined: np.ndarray
    calibration_pairs: int


def merge_cosines(first: np.ndarray, second: np.ndarray) -> MergedCosines:
    """Join two tiers' cosines of the same candidate pairs into one column.

    Args:
        first: ``(p,)`` float32 first-tier cosines (NaN where a row has no text).
        second: ``(p,)`` float32 second-tier cosines, NaN where a row was not embedded.

    Returns:
        The merged column; the first tier's cosines go through an isotonic regression of the
        second tier's on the first's, fitted on the pairs that have both (identity when fewer
        than 2 pairs have both).
    """
    from sklearn.isotonic import IsotonicRegression

    first = np.asarray(first, dtype=np.float32)
    second = np.asarray(second, dtype=np.float32)
    both = np.isfinite(first) & np.isfinite(second)
    out = first.copy()
    only_first = np.isfinite(first) & ~both
    if both.sum() >= 2 and only_first.any():
        iso = IsotonicRegression(increasing=True, out_of_bounds="clip")
        iso.fit(first[both].astype(np.float64), second[both].astype(np.float64))
        out[only_first] = iso.predict(first[only_first].astype(np.float64)).astype(np.float32)
    out[both] = second[both]
    return MergedCosines(out, both, int(both.sum()))
