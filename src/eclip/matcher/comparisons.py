"""Pairwise comparisons of two listings, and their levels for the Fellegi-Sunter model.

Each comparison turns a pair into one raw signal (a cosine, a code or attribute verdict, a
price ratio) and then into a discrete *comparison level*, as splink's comparison levels do:
level 0 is the strongest agreement, higher levels are weaker agreement or disagreement, and
``-1`` means the comparison does not apply (a value missing on either side), which the model
treats as no evidence either way.

Comparisons that tell near-twins apart (``64GB`` vs ``128GB``, ``i7-9700`` vs ``i7-9700K``)
have a *conflict* level of their own, so that a conflict counts as evidence against a match,
not only as the absence of evidence for one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from eclip.matcher.signals import ScoreWeights, score_pairs

NULL = -1
#: Level edges of the cosine comparisons, strongest first (a cosine >= edge[i] is level i).
EMBEDDING_EDGES = (0.95, 0.9, 0.85, 0.8, 0.7, 0.6)
TFIDF_EDGES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
#: Price-ratio edges (max / min price), closest first.
PRICE_EDGES = (1.1, 1.5, 3.0)
_PRICE = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Comparison:
    """One comparison: its name and the labels of its levels (index = level)."""

    name: str
    levels: tuple[str, ...]


def edge_levels(values: np.ndarray, edges: tuple[float, ...], higher_is_closer: bool = True) -> np.ndarray:
    """``(p,)`` int8 level of each value: ``i`` for the first edge it reaches (``>=`` an edge
    when higher is closer, as cosines; ``<=`` when lower is, as price ratios), ``len(edges)``
    past every edge, ``-1`` where NaN."""
    v = np.asarray(values, dtype=np.float32)
    lv = np.full(len(v), len(edges), dtype=np.int8)
    for i, e in reversed(list(enumerate(edges))):
        lv[(v >= e) if higher_is_closer else (v <= e)] = i
    lv[np.isnan(v)] = NULL
    return lv


def price_ratio(prices: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(p,)`` float32 ``max / min`` of the two rows' prices (>= 1), NaN where one is missing."""
    pa, pb = prices[a], prices[b]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.maximum(pa, pb) / np.minimum(pa, pb)).astype(np.float32)


def parse_price(value: str | None) -> float:
    """The first number in a price string (``"$1,499.98"`` -> 1499.98, ``"4.97E2"`` ->
    497.0); NaN when there is none or it is not positive."""
    if not value:
        return float("nan")
    m = _PRICE.search(str(value))
    if not m:
        return float("nan")
    try:
        v = float(m.group(0).replace(",", ""))
    except ValueError:
        return float("nan")
    return v if v > 0 else float("nan")


def normalise_brand(value: str | None) -> str:
    """Lower-cased alphanumerics of a brand (``"ELGATO SYSTEMS"`` -> ``"elgatosystems"``)."""
    return re.sub(r"[^0-9a-z]", "", (value or "").lower())


@dataclass
class RowFeatures:
    """What each row brings to a comparison; ``None`` leaves a comparison out.

    Attributes:
        embeddings: ``(n, d)`` float32, L2-normalised text vectors.
        valid: ``(n,)`` bool rows that have text (others compare as missing).
        tfidf: ``(n, v)`` CSR, rows L2-normalised (:class:`eclip.encoders.CharNgramTfidf`).
        codes: per row, its model codes (:func:`eclip.encoders.extract_codes`).
        quantities: per row, its numeric attributes (:func:`eclip.encoders.extract_quantities`).
        brands: per row, the normalised brand (``""`` when missing).
        prices: ``(n,)`` float64 prices, NaN when missing.
    """

    embeddings: np.ndarray
    valid: np.ndarray
    tfidf: sp.csr_matrix | None = None
    codes: list[frozenset[str]] | None = None
    quantities: list[dict[str, frozenset]] | None = None
    brands: list[str] | None = None
    prices: np.ndarray | None = None

    def comparisons(self) -> list[Comparison]:
        """The comparisons these features support, in a fixed order."""
        out = [Comparison("cos_embedding", tuple(f">={e}" for e in EMBEDDING_EDGES) + ("lower",))]
        if self.tfidf is not None:
            out.append(Comparison("cos_tfidf", tuple(f">={e}" for e in TFIDF_EDGES) + ("lower",)))
        if self.codes is not None:
            out.append(Comparison("code", ("shared", "prefix", "conflict")))
        if self.quantities is not None:
            out.append(Comparison("quantity", ("agree", "conflict")))
        if self.brands is not None:
            out.append(Comparison("brand", ("same", "different")))
        if self.prices is not None:
            out.append(Comparison("price_ratio", tuple(f"<={e}" for e in PRICE_EDGES) + ("higher",)))
        return out

    def signals(self, a: np.ndarray, b: np.ndarray, weights: ScoreWeights = ScoreWeights()) -> dict[str, np.ndarray]:
        """Raw signals of the pairs ``(a[p], b[p])`` (:func:`eclip.matcher.score_pairs`, with
        the combined ``score``) plus ``price_ratio`` (max / min >= 1): ``(p,)`` float32 each;
        cosines are NaN where a side has no text, the price ratio where a price is missing.
        """
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        out = score_pairs(
            a, b, self.embeddings, self.tfidf, self.codes, weights, quantities=self.quantities, brands=self.brands
        )
        missing = ~(self.valid[a] & self.valid[b])
        for name in ("cos_embedding", "cos_tfidf", "score"):
            if name in out:
                out[name][missing] = np.nan
        if self.prices is not None:
            out["price_ratio"] = price_ratio(self.prices, a, b)
        return out

    def levels(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        """``(p, c)`` int8 comparison levels of :meth:`signals`' output, one column per
        :meth:`comparisons` entry, ``-1`` where the comparison does not apply."""
        cols = []
        for comp in self.comparisons():
            v = signals[comp.name]
            if comp.name == "cos_embedding":
                cols.append(edge_levels(v, EMBEDDING_EDGES))
            elif comp.name == "cos_tfidf":
                cols.append(edge_levels(v, TFIDF_EDGES))
            elif comp.name == "code":
                cols.append(np.select([v >= 1.0, v > 0.0, v < 0.0], [0, 1, 2], NULL).astype(np.int8))
            elif comp.name in ("quantity", "brand"):
                cols.append(np.select([v > 0, v < 0], [0, 1], NULL).astype(np.int8))
            else:  # price_ratio: smaller is closer
                cols.append(edge_levels(v, PRICE_EDGES, higher_is_closer=False))
        return np.stack(cols, axis=1) if cols else np.zeros((0, 0), np.int8)
