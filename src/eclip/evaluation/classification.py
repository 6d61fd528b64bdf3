"""Classification metrics (accuracy, macro-F1, confusion summary) and the binary filter's
metrics (PR-AUC, recall at a fixed precision) with threshold calibration.

All computed with scikit-learn (``accuracy_score``, ``precision_recall_fscore_support``,
``average_precision_score``, ``precision_recall_curve``, ``roc_auc_score``). PR-AUC is
average precision (scikit-learn's step-wise area, no interpolation).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from eclip.errors import EclipError


def classification_metrics(
    pred: list[str], gold: list[str], unknown: str = "unknown", top_confusions: int = 10, worst_classes: int = 10
) -> dict[str, Any]:
    """Accuracy, macro-F1 and a confusion summary of predicted labels against gold labels.

    ``unknown`` predictions count as wrong in ``accuracy`` and ``macro_f1`` (over all rows);
    ``coverage`` is the share of rows not ``unknown`` and ``accuracy_on_predicted`` the
    accuracy on those. Macro-F1 averages over the gold classes (a predicted label that is no
    gold class adds no class to the average).

    Returns:
        ``rows``, ``classes``, ``accuracy``, ``macro_f1``, ``weighted_f1``, ``coverage``,
        ``accuracy_on_predicted``, ``top_confusions`` (the most frequent ``(gold,
        predicted, rows)`` mistakes) and ``worst_classes`` (lowest F1, with support).

    Raises:
        EclipError: no rows, or lengths differ.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    if len(pred) != len(gold):
        raise EclipError(f"{len(pred)} predictions but {len(gold)} gold labels.")
    if not gold:
        raise EclipError("no labelled rows to evaluate.")
    p = np.asarray(pred, dtype=object)
    g = np.asarray(gold, dtype=object)
    classes = sorted(set(gold))
    prec, rec, f1, support = precision_recall_fscore_support(g, p, labels=classes, zero_division=0)
    known = p != unknown
    mistakes = Counter(zip(g[p != g].tolist(), p[p != g].tolist()))
    order = np.argsort(f1, kind="stable")[:worst_classes]
    return {
        "rows": int(len(g)),
        "classes": len(classes),
        "accuracy": round(float(accuracy_score(g, p)), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "weighted_f1": round(float((f1 * support).sum() / support.sum()), 4),
        "coverage": round(float(known.mean()), 4),
        "accuracy_on_predicted": round(float((p[known] == g[known]).mean()), 4) if known.any() else None,
        "top_confusions": [
            {"gold": a, "predicted": b, "rows": n} for (a, b), n in mistakes.most_common(top_confusions)
        ],
        "worst_classes": [
            {
                "class": classes[i],
                "precision": round(float(prec[i]), 4),
                "recall": round(float(rec[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i in order
        ],
    }


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on a score and the precision/recall it gives on labelled rows."""

    threshold: float
    precision: float
    recall: float
    flagged: int
    met_target: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "flagged": self.flagged,
            "met_target": self.met_target,
        }


def _check_binary(scores: np.ndarray, y: np.ndarray) -> None:
    if len(scores) != len(y):
        raise EclipError(f"{len(scores)} scores but {len(y)} labels.")
    if not y.any() or y.all():
        raise EclipError(
            f"the labelled rows need positives and negatives; they have {int(y.sum())} positive(s) of {len(y)}."
        )


def threshold_for_precision(scores: np.ndarray, y: np.ndarray, target: float) -> OperatingPoint:
    """The lowest threshold whose precision on the labelled rows reaches ``target``: the
    largest recall at that precision. When no threshold reaches it, the threshold of the
    highest precision (``met_target`` false).

    Args:
        scores: ``(n,)`` float scores (higher = more likely positive); y: ``(n,)`` bool.

    Raises:
        EclipError: lengths differ, or the rows lack positives or negatives.
    """
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y, dtype=bool)
    _check_binary(scores, y)
    precision, recall, thresholds = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    ok = np.flatnonzero(precision >= target)
    i = int(ok[0]) if len(ok) else int(np.argmax(precision))  # thresholds ascend: the first is the lowest
    t = float(thresholds[i])
    return OperatingPoint(t, float(precision[i]), float(recall[i]), int((scores >= t).sum()), bool(len(ok)))


def at_threshold(scores: np.ndarray, y: np.ndarray, threshold: float, target: float | None = None) -> OperatingPoint:
    """Precision and recall of flagging ``scores >= threshold``; ``met_target`` says whether
    the precision reaches ``target`` (true when no target is given)."""
    y = np.asarray(y, dtype=bool)
    flag = scores >= threshold
    tp = int((flag & y).sum())
    precision = tp / flag.sum() if flag.any() else 1.0
    met = True if target is None else bool(precision >= target)
    return OperatingPoint(float(threshold), precision, tp / y.sum() if y.any() else 0.0, int(flag.sum()), met)


def binary_metrics(scores: np.ndarray, y: np.ndarray, precision_target: float = 0.9) -> dict[str, Any]:
    """PR-AUC (average precision), ROC-AUC and recall at ``precision_target`` of a score.

    Raises:
        EclipError: lengths differ, or the rows lack positives or negatives.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y, dtype=bool)
    _check_binary(scores, y)
    point = threshold_for_precision(scores, y, precision_target)
    return {
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "pr_auc": round(float(average_precision_score(y, scores)), 4),
        "roc_auc": round(float(roc_auc_score(y, scores)), 4),
        f"recall_at_precision_{precision_target:g}": round(point.recall, 4) if point.met_target else 0.0,
        "operating_point": point.as_dict(),
    }
