"""Per-pair similarity signals and the combined match score.

score = (w_embedding * cos(embeddings) + w_tfidf * cos(char n-gram TF-IDF)) / (w_embedding + w_tfidf)
        + w_code * code + w_quantity * min(quantity, 0) + w_brand * min(brand, 0)

where ``code`` is +1 when the two titles share a model code, +0.5 when one code extends the
other (``wh1000xm3`` / ``wh1000xm3b``), -1 when both carry codes and none agree, and 0 when
either has none (:func:`code_similarity`). ``quantity`` is -1 when the titles state different
values of one attribute (``64GB`` vs ``128GB``, ``0.7 l`` vs ``1 l``) and ``brand`` -1 when the
catalog's brand column differs: a conflict is evidence against a match, while agreement on
them adds nothing (many different products share a size or a brand). The score is not
bounded to [0, 1]: a shared code lifts it above 1.

The default weights were chosen on the shared dev catalogs (Abt-Buy, WDC Products); see
docs/how-matching-works.md for the measurements. The quantity weight (0.8) was chosen
leave-one-catalog-out over the dev suite (``bench/transfer.py``): F1 is flat from 0.2 to 0.8
there, and at 0.8 a conflict is close to a veto, so that near-twins whose titles are
otherwise the same (``64GB`` vs ``128GB``, ``EOS 6D`` vs ``80D``, silver vs black) no longer
match at a probability near 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class ScoreWeights:
    """Weights of the signals in the combined score (see the module docstring)."""

    embedding: float = 0.5
    tfidf: float = 0.5
    code: float = 0.3
    quantity: float = 0.8
    brand: float = 0.2


def code_similarity(x: frozenset[str], y: frozenset[str], min_prefix: int = 5) -> float:
    """Agreement of two titles' model codes.

    +1: a shared code, and no conflict among the rest; +0.5: no shared code, but one extends
    the other (``wh1000xm3`` / ``wh1000xm3b``, both >= ``min_prefix`` chars); 0: either has no
    code, or a shared code while each side also has a code the other lacks and that does
    not extend it (``s320`` shared, ``3780001`` vs ``3880001``: a series shared by two
    variants, or a shop's own numeric SKUs); -1: both have codes and none agree, or the
    codes they share are shorter than the letter-and-digit model codes they disagree on
    (``2line`` shared, ``kxtsc14w`` vs ``kxts208w``: a generic token agrees, the model
    numbers do not).
    """
    if not x or not y:
        return 0.0
    shared = x & y
    rest_x, rest_y = x - shared, y - shared
    related = any(_extends(p, q, min_prefix) for p in rest_x for q in rest_y)
    if shared:
        if not rest_x or not rest_y or related:
            return 1.0
        longest_shared = max(map(len, shared))

        def model_codes(rest: frozenset[str]) -> bool:
            return any(len(c) > longest_shared and not c.isdigit() for c in rest)

        return -1.0 if model_codes(rest_x) and model_codes(rest_y) else 0.0
    return 0.5 if related else -1.0


def _extends(p: str, q: str, min_prefix: int) -> bool:
    short, long_ = (p, q) if len(p) <= len(q) else (q, p)
    return len(short) >= min_prefix and long_.startswith(short)


def _rowwise_dense(e: np.ndarray, a: np.ndarray, b: np.ndarray, step: int = 65_536) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), step):
        out[s : s + step] = np.einsum("ij,ij->i", e[a[s : s + step]], e[b[s : s + step]])
    return out


def _rowwise_sparse(x: sp.csr_matrix, a: np.ndarray, b: np.ndarray, step: int = 65_536) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), step):
        out[s : s + step] = np.asarray(x[a[s : s + step]].multiply(x[b[s : s + step]]).sum(axis=1)).ravel()
    return out


#: Kinds of quantity conflict, each a bit of the ``quantity_kinds`` signal: model and series
#: numbers (``HP 901`` vs ``95``), short model tokens (``EOS 6D`` vs ``80D``), colours, and
#: every dimension with a unit (``64GB`` vs ``128GB``, ``2-pack`` vs single).
CONFLICT_KINDS = {"number": 1, "model": 2, "colour": 4, "unit": 8}
#: Bit of ``quantity_kinds`` set when the two titles state some dimension in common.
SHARED_DIMENSION = 16


def quantity_comparison(x: dict[str, frozenset], y: dict[str, frozenset]) -> int:
    """Which kinds of attribute two titles disagree on, as bits (:data:`CONFLICT_KINDS`), with
    :data:`SHARED_DIMENSION` set when they state a dimension in common; 0 when none is."""
    common = x.keys() & y.keys()
    if not common:
        return 0
    mask = SHARED_DIMENSION
    for d in common:
        if not (x[d] & y[d]):
            mask |= CONFLICT_KINDS.get(d, CONFLICT_KINDS["unit"])
    return mask


def describe_conflicts(kinds: np.ndarray, code: np.ndarray | None, brand: np.ndarray | None) -> list[str]:
    """Per pair, what its two titles disagree on, for a reviewer: ``"code, number, colour"``
    (``""`` for nothing). ``kinds``: ``(p,)`` the ``quantity_kinds`` bits; ``code``, ``brand``:
    ``(p,)`` verdicts (-1 is a conflict), or ``None``."""
    k = np.nan_to_num(np.asarray(kinds, np.float64)).astype(np.int64)
    parts: list[list[str]] = [[] for _ in range(len(k))]
    for name, verdict in (("code", code), ("brand", brand)):
        if verdict is not None:
            for i in np.flatnonzero(np.asarray(verdict) == -1).tolist():
                parts[i].append(name)
    for kind, bit in CONFLICT_KINDS.items():
        for i in np.flatnonzero(k & bit).tolist():
            parts[i].append(kind)
    return [", ".join(p) for p in parts]


def verdict_of_kinds(kinds: np.ndarray) -> np.ndarray:
    """``(p,)`` float32 quantity verdicts from ``(p,)`` :func:`quantity_comparison` bits: -1
    some kind conflicts, +1 a dimension in common and no conflict, 0 no dimension in common."""
    k = np.nan_to_num(np.asarray(kinds, np.float64)).astype(np.int64)
    return np.where(k & (SHARED_DIMENSION - 1), -1, np.sign(k)).astype(np.float32)


def quantity_verdict(x: dict[str, frozenset], y: dict[str, frozenset]) -> int:
    """+1 the two share a value in every dimension both state; -1 some dimension both state
    has no value in common (``64GB`` vs ``128GB``); 0 no dimension in common: the verdict of
    :func:`quantity_comparison`'s bits (:func:`verdict_of_kinds`)."""
    return int(verdict_of_kinds(np.array([quantity_comparison(x, y)]))[0])


def brand_verdict(x: str, y: str) -> int:
    """+1 same normalised brand (or one extends the other: ``hp`` / ``hpinc``), -1 different,
    0 either missing."""
    if not x or not y:
        return 0
    short, long_ = (x, y) if len(x) <= len(y) else (y, x)
    return 1 if long_.startswith(short) else -1


def _verdicts(verdict, values: list, a: np.ndarray, b: np.ndarray, step: int = 1 << 21) -> np.ndarray:
    """``(p,)`` float32 ``verdict(values[a[p]], values[b[p]])``, called only where both values
    are non-empty (every verdict here is 0 when either side is empty): at 1M rows most pairs
    lack a brand or a quantity on one side, and the Python calls are the stage's cost.

    Values are compared by identity first: rows holding the same object (one per distinct
    value, as :func:`eclip.encoders.lexical.codes_of_all` makes them) give one call per
    distinct pair of objects, broadcast to every pair of rows that holds it."""
    has = np.fromiter((bool(v) for v in values), bool, len(values))
    both = np.flatnonzero(has[a] & has[b])
    out = np.zeros(len(a), dtype=np.float32)
    if not len(both):
        return out
    _, value_of = np.unique(np.fromiter(map(id, values), np.int64, len(values)), return_inverse=True)
    width = int(value_of.max()) + 1
    first_row = np.full(width, -1, np.int64)
    first_row[value_of[::-1]] = np.arange(len(values) - 1, -1, -1)  # a row holding each value
    for s in range(0, len(both), step):  # in steps: the keys of 10M pairs at once cost 0.3 GiB
        part = both[s : s + step]
        keys, inverse = np.unique(value_of[a[part]].astype(np.int64) * width + value_of[b[part]], return_inverse=True)
        rows_x, rows_y = first_row[keys // width], first_row[keys % width]
        once = np.fromiter(
            (verdict(values[i], values[j]) for i, j in zip(rows_x.tolist(), rows_y.tolist())), np.float32, len(keys)
        )
        out[part] = once[inverse.ravel()]
    return out


def score_pairs(
    a: np.ndarray,
    b: np.ndarray,
    embeddings: np.ndarray,
    tfidf: sp.csr_matrix | None,
    codes: list[frozenset[str]] | None,
    weights: ScoreWeights = ScoreWeights(),
    cos: np.ndarray | None = None,
    quantities: list[dict[str, frozenset]] | None = None,
    brands: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Signals and combined score of the pairs ``(a[p], b[p])``.

    Args:
        a, b: ``(p,)`` int64 row positions.
        embeddings: ``(n, d)`` float32, L2-normalised.
        tfidf: ``(n, v)`` CSR with L2-normalised rows, or ``None`` to leave the signal out.
        codes: per row, its model codes, or ``None`` to leave the signal out.
        cos: ``(p,)`` float32 embedding cosines when already known (e.g. scores from an
            index whose vectors are not at hand); ``None`` computes them from ``embeddings``.
        quantities: per row, its numeric attributes
            (:func:`eclip.encoders.lexical.extract_quantities`), or ``None``.
        brands: per row, the normalised brand (``""`` when missing), or ``None``.

    Returns:
        ``{"cos_embedding", "cos_tfidf", "code", "quantity", "quantity_kinds", "brand",
        "score"}`` (those computed), each ``(p,)`` float32;
        ``quantity`` and ``brand`` are :func:`quantity_verdict` and :func:`brand_verdict`,
        ``quantity_kinds`` the bits of :func:`quantity_comparison` (which kinds conflict).
    """
    out: dict[str, np.ndarray] = {
        "cos_embedding": _rowwise_dense(embeddings, a, b) if cos is None else np.asarray(cos, np.float32)
    }
    score = weights.embedding * out["cos_embedding"]
    total = weights.embedding
    if tfidf is not None:
        out["cos_tfidf"] = _rowwise_sparse(tfidf, a, b)
        score = score + weights.tfidf * out["cos_tfidf"]
        total += weights.tfidf
    score = score / total  # a weighted mean of cosines, whichever are used
    if codes is not None:
        out["code"] = _verdicts(code_similarity, codes, a, b)
        score = score + weights.code * out["code"]
    if quantities is not None:
        kinds = _verdicts(quantity_comparison, quantities, a, b)  # bits, exact in float32
        out["quantity"] = verdict_of_kinds(kinds)
        out["quantity_kinds"] = kinds
        score = score + weights.quantity * np.minimum(out["quantity"], 0)
    if brands is not None:
        out["brand"] = _verdicts(brand_verdict, brands, a, b)
        score = score + weights.brand * np.minimum(out["brand"], 0)
    out["score"] = score.astype(np.float32)
    return out


def conflict_penalty(signals: dict[str, np.ndarray], weights: ScoreWeights) -> np.ndarray:
    """``(p,)`` float32, <= 0: the part of each pair's text score that its conflicts took
    away (``w_quantity * min(quantity, 0) + w_brand * min(brand, 0)``; 0 where a verdict is
    missing). ``text_score - conflict_penalty`` is the score before penalties, which the
    match model is fitted to (:func:`eclip.matcher.mixture.learn_settings`)."""
    n = len(next(iter(signals.values()))) if signals else 0
    out = np.zeros(n, dtype=np.float32)
    for name, w in (("quantity", weights.quantity), ("brand", weights.brand)):
        if name in signals:
            out += w * np.minimum(np.nan_to_num(np.asarray(signals[name], dtype=np.float32)), 0)
    return out


@dataclass(frozen=True)
class ModalityThresholds:
    """Per-signal thresholds: a pair matches when any enabled signal passes its own.

    Attributes:
        text: minimum combined text score (:func:`score_pairs`); also the threshold of the
            final score, on which grouping runs.
        image: minimum cosine of the image embeddings.
        fused: minimum cosine of the fused embeddings.
        phash: largest Hamming distance of the 64-bit pHashes, bits.

    The union of per-modality matches, each with its own threshold, follows the winning
    Shopee Price Match Guarantee solutions (Kaggle 2021: image-only F1 0.70, text+image
    union 0.78).
    """

    text: float = 0.6
    image: float = 0.9
    fused: float = 0.85
    phash: int = 8


def cosine_pairs(embeddings: np.ndarray, a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row-wise cosines of ``(a[p], b[p])`` for L2-normalised ``(n, d)`` float32 rows;
    NaN where ``valid`` ((n,) bool) is false for either row."""
    out = _rowwise_dense(embeddings, a, b)
    out[~(valid[a] & valid[b])] = np.nan
    return out


def passing_signals(signals: dict[str, np.ndarray], t: ModalityThresholds) -> dict[str, np.ndarray]:
    """Which pairs each signal passes on its own threshold (the rule of :func:`combine_modalities`).

    Args:
        signals: as in :func:`combine_modalities` (NaN where a row lacks the modality).

    Returns:
        ``{"text"|"image"|"fused"|"phash": (p,) bool}`` for the signals present; a missing
        value never passes.
    """
    tests = {
        "text": ("text_score", lambda v: v >= t.text),
        "image": ("cos_image", lambda v: v >= t.image),
        "fused": ("cos_fused", lambda v: v >= t.fused),
        "phash": ("phash_distance", lambda v: v <= t.phash),
    }
    out = {}
    for name, (col, test) in tests.items():
        if col in signals:
            with np.errstate(invalid="ignore"):
                out[name] = test(np.nan_to_num(np.asarray(signals[col]), nan=np.inf if name == "phash" else -np.inf))
    return out


def combine_modalities(signals: dict[str, np.ndarray], t: ModalityThresholds) -> np.ndarray:
    """The final pair score: the best of the per-signal scores, each shifted so that its own
    threshold lands on ``t.text``.

    Args:
        signals: any of ``text_score``, ``cos_image``, ``cos_fused`` (``(p,)`` float32, NaN
            where a row lacks the modality) and ``phash_distance`` (``(p,)`` float32 bits, NaN
            where missing).

    Returns:
        ``(p,)`` float32; ``score >= t.text`` exactly when some signal passes its threshold;
        ``-inf`` where no signal applies.
    """
    shifted = []
    if "text_score" in signals:
        shifted.append(signals["text_score"])
    if "cos_image" in signals:
        shifted.append(signals["cos_image"] - t.image + t.text)
    if "cos_fused" in signals:
        shifted.append(signals["cos_fused"] - t.fused + t.text)
    if "phash_distance" in signals:
        shifted.append(t.text + (t.phash - signals["phash_distance"]) / 64.0)
    if not shifted:
        raise ValueError("combine_modalities needs at least one signal")
    stack = np.vstack(shifted).astype(np.float32)
    stack[np.isnan(stack)] = -np.inf
    return stack.max(axis=0)


def passing_counts(signals: dict[str, np.ndarray], t: ModalityThresholds, matched: np.ndarray) -> dict[str, int]:
    """Among the accepted pairs (``matched``, ``(p,)`` bool), how many each signal passes on
    its own threshold (:func:`passing_signals`)."""
    return {name: int((ok & matched).sum()) for name, ok in passing_signals(signals, t).items()}
