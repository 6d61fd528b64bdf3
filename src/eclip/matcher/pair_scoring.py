"""Every signal of a block of candidate pairs, and their combined score: the scoring step of
``eclip dedupe`` as one function of its inputs, so a block of pairs can be scored anywhere
(in this process, or in a Ray task) with the same result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eclip.encoders.phash import hamming
from eclip.matcher.comparisons import price_ratio
from eclip.matcher.signals import (
    ModalityThresholds,
    ScoreWeights,
    combine_modalities,
    conflict_penalty,
    cosine_pairs,
    score_pairs,
)


@dataclass
class PairInputs:
    """What scoring a candidate pair reads, per catalog row (``n`` rows): the enabled
    signals, the ``(n, d)`` float32 L2-normalised vectors (``None`` where absent), the
    ``(n, 8)`` uint8 pHash codes, the ``(n,)`` bool presence masks, the fitted TF-IDF
    matrix, model codes, quantities, brands, prices, and the weights and thresholds.

    ``text_cosines``: the ``(p,)`` float32 title-embedding cosines of the very pairs being
    scored, computed beforehand so that ``text`` need not be held (then ``text`` is unread).
    """

    signals_on: tuple[str, ...]
    text: np.ndarray
    image: np.ndarray | None
    fused: np.ndarray | None
    phash: np.ndarray | None
    has_text: np.ndarray
    has_image: np.ndarray
    has_fused: np.ndarray
    tfidf: Any
    codes: list | None
    quantities: list | None
    brands: list | None
    prices: np.ndarray | None
    weights: ScoreWeights
    thresholds: ModalityThresholds
    text_cosines: np.ndarray | None = None


def score_candidates(a: np.ndarray, b: np.ndarray, x: PairInputs) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every signal of the candidate pairs ``(a[i], b[i])`` (``(m,)`` int64 row positions)
    and their combined score (:func:`eclip.matcher.combine_modalities`).

    Returns:
        ``(signals, score)``: signal name -> ``(m,)`` float32 (NaN where a row lacks the
        signal), and the ``(m,)`` float32 final score. Each pair is scored on its own, so
        scoring blocks of pairs separately gives the same numbers.
    """
    signals: dict[str, np.ndarray] = {}
    if "text" in x.signals_on:
        text = score_pairs(
            a, b, x.text, x.tfidf, x.codes, x.weights, x.text_cosines, quantities=x.quantities, brands=x.brands
        )
        invalid = ~(x.has_text[a] & x.has_text[b])
        for name, v in text.items():
            v[invalid] = np.nan
            signals["text_score" if name == "score" else name] = v
    if "image" in x.signals_on:
        assert x.image is not None, "image signals need image vectors"
        signals["cos_image"] = cosine_pairs(x.image, a, b, x.has_image)
    if "fused" in x.signals_on:
        assert x.fused is not None, "fused signals need fused vectors"
        signals["cos_fused"] = cosine_pairs(x.fused, a, b, x.has_fused)
    if "phash" in x.signals_on:
        assert x.phash is not None, "the phash signal needs pHashes"
        d = hamming(x.phash[a], x.phash[b]).astype(np.float32)
        d[~(x.has_image[a] & x.has_image[b])] = np.nan
        signals["phash_distance"] = d
    if x.prices is not None:
        signals["price_ratio"] = price_ratio(x.prices, a, b)
    score = combine_modalities(signals, x.thresholds) if len(a) else np.zeros(0, np.float32)
    return signals, score


def score_before_penalties(
    signals: dict[str, np.ndarray], weights: ScoreWeights, thresholds: ModalityThresholds
) -> np.ndarray:
    """``(p,)`` float32: the final score (:func:`eclip.matcher.combine_modalities`) with the
    text score's conflict penalties (:func:`eclip.matcher.signals.conflict_penalty`) left
    out; the scores the label-free match model is fitted to. Without a text score, the
    final score itself."""
    if "text_score" not in signals or not len(signals["text_score"]):
        return combine_modalities(signals, thresholds) if signals else np.zeros(0, np.float32)
    text = signals["text_score"] - conflict_penalty(signals, weights)
    return combine_modalities({**signals, "text_score": text}, thresholds)


def with_embedding_cosines(
    signals: dict[str, np.ndarray], cos: np.ndarray, weights: ScoreWeights, thresholds: ModalityThresholds
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The signals and final score of the same pairs with their title-embedding cosines
    replaced by ``cos`` (``(p,)`` float32; e.g. a second model's, :mod:`eclip.matcher.cascade`).

    The text score is linear in the cosine (:func:`eclip.matcher.signals.score_pairs`: a
    weighted mean of the embedding and TF-IDF cosines plus the verdicts' terms), so it moves by
    the cosine's change times its weight; nothing else is recomputed. Same numbers as scoring
    the pairs afresh with those cosines.

    Raises:
        ValueError: ``signals`` has no embedding cosine, or ``cos`` another length.
    """
    if "cos_embedding" not in signals or len(cos) != len(signals["cos_embedding"]):
        raise ValueError("with_embedding_cosines needs the text signals of the same pairs")
    total = weights.embedding + (weights.tfidf if "cos_tfidf" in signals else 0.0)
    cos = np.asarray(cos, dtype=np.float32)
    shift = (weights.embedding / total) * (cos - signals["cos_embedding"])
    out = {**signals, "cos_embedding": cos, "text_score": (signals["text_score"] + shift).astype(np.float32)}
    return out, combine_modalities(out, thresholds)
