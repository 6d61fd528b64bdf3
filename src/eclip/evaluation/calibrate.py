"""Threshold calibration on labelled data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eclip.errors import RunDirError
from eclip.evaluation.metrics import pairwise_prf, rounded
from eclip.matcher.grouping import group
from eclip.rundir import read_json


@dataclass(frozen=True)
class Calibration:
    """The chosen threshold and the pairwise scores it gave on the labelled data."""

    method: str
    threshold: float
    objective: str
    precision: float
    recall: float
    f1: float
    meaning: str = ""

    def as_dict(self) -> dict:
        return rounded(asdict(self))


def threshold_curve(
    n: int, a: np.ndarray, b: np.ndarray, score: np.ndarray, gold: np.ndarray, method: str, steps: int = 101
) -> list[tuple[float, float, float, float]]:
    """Pairwise ``(threshold, precision, recall, f1)`` of the groups made at each threshold of
    a sweep over the score quantiles (``steps`` points, duplicates dropped), ascending.

    Args:
        n: rows; a, b, score: ``(p,)`` scored candidate pairs (row positions, float32);
        gold: ``(n,)`` gold labels; method: a grouping method of :mod:`eclip.matcher.grouping`.
    """
    grid = np.unique(np.quantile(score, np.linspace(0.0, 1.0, steps)).round(4)) if len(score) else np.array([0.0])
    return [(float(t), *pairwise_prf(group(n, a, b, score, float(t), method).labels, gold)) for t in grid]


def calibrate(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    gold: np.ndarray,
    method: str,
    target_precision: float | None = None,
    steps: int = 101,
) -> Calibration:
    """Sweep thresholds (:func:`threshold_curve`), regroup at each, and pick one.

    With ``target_precision`` None, the threshold maximising pairwise F1; otherwise the
    lowest threshold whose pairwise precision reaches the target (most recall at that
    precision), or the most precise one when none does.
    """
    results = threshold_curve(n, a, b, score, gold, method, steps)
    if target_precision is None:
        t, p, r, f = max(results, key=lambda x: (x[3], -x[0]))
        objective = "max_f1"
    else:
        ok = [x for x in results if x[1] >= target_precision]
        t, p, r, f = min(ok, key=lambda x: x[0]) if ok else max(results, key=lambda x: x[1])
        objective = f"precision>={target_precision}"
    return Calibration(
        method=method,
        threshold=t,
        objective=objective,
        precision=p,
        recall=r,
        f1=f,
        meaning=threshold_meaning(t, score, method),
    )


#: What dedupe's combined score is, for messages about thresholds on it.
SCORE_RANGE = (
    "the score is a mean of cosines (up to 1) plus 0.3 x code agreement, minus 0.2 per quantity or brand "
    "conflict, so it runs from about -0.7 to 1.3"
)


def threshold_meaning(threshold: float, score: np.ndarray, method: str) -> str:
    """A threshold in words: ``no threshold`` when it keeps every candidate pair, and what
    it keeps when it lies above 1 (:data:`SCORE_RANGE`); empty otherwise."""
    finite = np.asarray(score, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) and threshold <= finite.min() + 1e-4:  # the sweep rounds thresholds to 4 decimals
        return f"no threshold helps F1 here: every {method} pair is kept (the threshold is the lowest candidate score)"
    if threshold > 1.0:
        return f"above 1: only pairs whose codes agree pass ({SCORE_RANGE})"
    return ""


def calibrate_methods(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    gold: np.ndarray,
    methods: tuple[str, ...],
    target_precision: float | None = None,
) -> tuple[Calibration, dict[str, Calibration]]:
    """:func:`calibrate` every grouping method on the same pairs and pick the winner: the best
    F1, or with ``target_precision`` the most recall among methods that reach it (else the
    most precise). ``average`` sweeps 41 thresholds, the others 101.

    Returns:
        ``(winner, {method: its calibration})``.
    """
    per = {
        m: calibrate(n, a, b, score, gold, m, target_precision, steps=41 if m == "average" else 101) for m in methods
    }
    if target_precision is None:
        best = max(per.values(), key=lambda c: c.f1)
    else:
        ok = [c for c in per.values() if c.precision >= target_precision]
        best = max(ok, key=lambda c: c.recall) if ok else max(per.values(), key=lambda c: c.precision)
    return best, per


def read_calibration(path: str | Path) -> tuple[str, float]:
    """``(method, threshold)`` from a ``calibration.json`` written by ``eclip eval --sweep``.

    Raises:
        RunDirError: the file is missing or lacks ``method``/``threshold``, or the threshold
            is not a finite number.
        InputFileError: the file is not valid JSON.
    """
    data = read_json(path)
    if "threshold" not in data or "method" not in data:
        raise RunDirError(f"{path}: not a calibration file (run `eclip eval ... --sweep` to write one).")
    try:
        threshold = float(data["threshold"])
    except (TypeError, ValueError):
        threshold = math.nan
    if not math.isfinite(threshold):  # JSON allows NaN and Infinity
        raise RunDirError(
            f"{path}: threshold {data['threshold']!r} is not a finite number; run `eclip eval --sweep` again."
        )
    return str(data["method"]), threshold
