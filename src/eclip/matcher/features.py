"""The match model's features: what a candidate pair's signals become for the regression
(:mod:`eclip.matcher.model`).

* every signal the run has (embedding and TF-IDF cosines, model-code, quantity and brand
  verdicts, image / fused cosines, pHash distance, price ratio);
* one-hot levels for the code verdict, a missing-value indicator for each signal that can
  be absent;
* one indicator per kind of attribute conflict (``conflict_number``, ``conflict_model``,
  ``conflict_colour``, ``conflict_unit``: :data:`eclip.matcher.signals.CONFLICT_KINDS`), so
  that a reviewer's "different" on ``AV 500`` vs ``AV 200`` moves every pair whose titles
  disagree on a model number, not only that pair;
* two context features: how far the pair's score is below the best score of each of its
  rows. Context decides many matches in catalogs of pairs (a listing's best candidate is its
  duplicate) and is standard in entity-resolution features ("unique mapping" evidence,
  Papadakis et al., EDBT 2020).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from eclip.errors import EclipError
from eclip.matcher.signals import CONFLICT_KINDS

#: Signals that feed the model when the run has them, and whether they can be missing.
SIGNAL_FEATURES = {
    "cos_embedding": False,
    "cos_tfidf": False,
    "code": False,
    "quantity": False,
    "brand": False,
    "cos_image": True,
    "cos_fused": True,
    "phash_distance": True,
}
#: Kinds of attribute conflict with an indicator each: bits of the ``quantity_kinds`` signal
#: (:data:`eclip.matcher.signals.CONFLICT_KINDS`).
CONFLICT_FEATURES = {f"conflict_{kind}": bit for kind, bit in CONFLICT_KINDS.items()}
#: Code verdict levels with a one-hot feature each (see :func:`eclip.matcher.signals.code_similarity`).
CODE_LEVELS = {"code_shared": 1.0, "code_extends": 0.5, "code_conflict": -1.0}


class MatchModelError(EclipError):
    """A match model file cannot be used: unreadable, or built on other signals."""


def _best_per_row(n: int, a: np.ndarray, b: np.ndarray, score: np.ndarray) -> np.ndarray:
    best = np.full(n, -np.inf)
    s = np.nan_to_num(np.asarray(score, np.float64), nan=-np.inf)
    np.maximum.at(best, a, s)
    np.maximum.at(best, b, s)
    return best


def available_features(columns: Mapping[str, Any] | list[str]) -> list[str]:
    """The feature names :func:`pair_features` can compute from a pair table's columns."""
    cols = set(columns)
    names = []
    for sig, can_miss in SIGNAL_FEATURES.items():
        if sig in cols:
            names.append(sig)
            if can_miss:
                names.append(f"{sig}_missing")
            if sig == "code":
                names += list(CODE_LEVELS)
    if "quantity_kinds" in cols:
        names += list(CONFLICT_FEATURES)
    if "price_ratio" in cols:
        names += ["log_price_ratio", "price_ratio_missing"]
    if "score" in cols:
        names += ["score", "gap_to_best_a", "gap_to_best_b"]
    return names


def pair_features(
    columns: Mapping[str, np.ndarray], a: np.ndarray, b: np.ndarray, n: int, names: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """The feature matrix of candidate pairs.

    Args:
        columns: pair-table columns by name (``pairs.parquet``'s signal columns and
            ``score``), each ``(p,)`` numeric, NaN where missing.
        a, b: ``(p,)`` int64 row positions of the pairs (for the context features).
        n: rows in the catalog.
        names: the features wanted (a model's); ``None``: all the columns allow.

    Returns:
        ``((p, f) float64 features, names)``; missing values are 0 with their indicator set.

    Raises:
        MatchModelError: a wanted feature needs a column the table lacks.
    """
    names = available_features(columns) if names is None else list(names)
    missing = [f for f in names if f not in available_features(columns)]
    if missing:
        raise MatchModelError(f"the pairs lack the signal(s) behind {', '.join(missing)}")
    col = {
        k: np.asarray(v, dtype=np.float64)
        for k, v in columns.items()
        if k in SIGNAL_FEATURES or k in ("price_ratio", "score", "quantity_kinds")
    }
    best = _best_per_row(n, a, b, col["score"]) if "score" in col else np.zeros(n)  # gap features need the score
    out = np.zeros((len(a), len(names)), dtype=np.float64)
    for j, f in enumerate(names):
        if f in SIGNAL_FEATURES:
            v = np.nan_to_num(col[f], nan=0.0)
        elif f == "score":
            v = np.nan_to_num(col[f], nan=0.0, neginf=0.0)
        elif f.endswith("_missing"):
            v = np.isnan(col[f.removesuffix("_missing")]).astype(np.float64)
        elif f in CONFLICT_FEATURES:
            bits = np.nan_to_num(col["quantity_kinds"], nan=0.0).astype(np.int64)
            v = ((bits & CONFLICT_FEATURES[f]) > 0).astype(np.float64)
        elif f in CODE_LEVELS:
            v = (col["code"] == CODE_LEVELS[f]).astype(np.float64)
        elif f == "log_price_ratio":
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.nan_to_num(np.log(col["price_ratio"]), nan=0.0, posinf=0.0, neginf=0.0)
        else:  # gap_to_best_a / _b: how far below each row's best candidate the pair scores
            rows = a if f.endswith("_a") else b
            s = np.nan_to_num(col["score"], nan=-np.inf)
            v = np.nan_to_num(best[rows] - s, nan=0.0, posinf=2.0, neginf=0.0)
            v = np.minimum(v, 2.0)
        out[:, j] = v
    return out, names
