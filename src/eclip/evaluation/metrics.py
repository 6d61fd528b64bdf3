"""Clustering metrics: pairwise and B-cubed precision/recall/F1, ARI, NMI; blocking recall@k.

* Pairwise: a predicted pair is a true positive when both rows share a gold group
  (Christen, "Data Matching", Springer 2012, section 7.3).
* B-cubed: per-row precision and recall of its group, averaged over rows (Bagga & Baldwin,
  1998; Amigó et al., "A comparison of extrinsic clustering evaluation metrics", 2009).
* ARI and NMI: scikit-learn's ``adjusted_rand_score`` and ``normalized_mutual_info_score``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


@dataclass(frozen=True)
class ClusterMetrics:
    """Scores of predicted groups against gold groups (all in [0, 1] except ARI in [-1, 1])."""

    precision: float
    recall: float
    f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    ari: float
    nmi: float
    predicted_pairs: int
    gold_pairs: int
    true_pairs: int

    def as_dict(self) -> dict:
        return rounded(asdict(self))


def rounded(values: dict) -> dict:
    """``values`` with every float rounded to 4 decimals (for JSON reports)."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in values.items()}


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _pairs(sizes: np.ndarray) -> int:
    s = sizes.astype(np.int64)
    return int((s * (s - 1) // 2).sum())


def pairwise_counts(pred: np.ndarray, gold: np.ndarray) -> tuple[int, int, int]:
    """``(predicted_pairs, gold_pairs, true_pairs)`` of two ``(n,)`` label arrays."""
    df = pl.DataFrame({"p": pred, "g": gold})
    return (
        _pairs(df.group_by("p").len()["len"].to_numpy()),
        _pairs(df.group_by("g").len()["len"].to_numpy()),
        _pairs(df.group_by("p", "g").len()["len"].to_numpy()),
    )


def _prf(n_pred: int, n_gold: int, tp: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, _f1(p, r)


def pair_set_prf(pred: set, gold: set) -> tuple[float, float, float]:
    """Pairwise ``(precision, recall, f1)`` of a set of predicted pairs against a set of
    gold pairs (e.g. ``(left id, right id)`` links against gold cross pairs)."""
    return _prf(len(pred), len(gold), len(pred & gold))


def pairwise_prf(pred: np.ndarray, gold: np.ndarray) -> tuple[float, float, float]:
    """Pairwise ``(precision, recall, f1)`` of ``(n,)`` predicted labels against ``(n,)`` gold."""
    return _prf(*pairwise_counts(pred, gold))


def noise_as_singletons(labels: np.ndarray) -> np.ndarray:
    """``(n,)`` int64 labels where each noise row (label ``-1``, as HDBSCAN writes it) gets a
    cluster of its own, numbered after the largest label; the usual way to score clusterings
    with noise against gold labels."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.where(labels >= 0, labels, labels.max(initial=-1) + 1 + np.arange(len(labels)))


def cluster_metrics(pred: np.ndarray, gold: np.ndarray) -> ClusterMetrics:
    """Compare ``(n,)`` predicted group labels with ``(n,)`` gold labels."""
    n_pred, n_gold, tp = pairwise_counts(pred, gold)
    p, r, f1 = _prf(n_pred, n_gold, tp)
    df = pl.DataFrame({"p": pred, "g": gold})
    df = df.with_columns(
        pl.len().over("p").alias("np"), pl.len().over("g").alias("ng"), pl.len().over("p", "g").alias("npg")
    )
    bp = float((df["npg"] / df["np"]).mean() or 0.0) if len(df) else 0.0  # type: ignore[arg-type]  # a float Series' mean
    br = float((df["npg"] / df["ng"]).mean() or 0.0) if len(df) else 0.0  # type: ignore[arg-type]
    return ClusterMetrics(
        precision=p,
        recall=r,
        f1=f1,
        bcubed_precision=bp,
        bcubed_recall=br,
        bcubed_f1=_f1(bp, br),
        ari=float(adjusted_rand_score(gold, pred)),
        nmi=float(normalized_mutual_info_score(gold, pred)),
        predicted_pairs=n_pred,
        gold_pairs=n_gold,
        true_pairs=tp,
    )


def gold_pair_mask(a: np.ndarray, b: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """``(p,)`` bool: which pairs ``(a, b)`` (row positions) are in the same gold group."""
    return gold[a] == gold[b]


def blocking_recall(
    a: np.ndarray, b: np.ndarray, rank: np.ndarray, gold: np.ndarray, ks: tuple[int, ...]
) -> dict[str, float]:
    """Blocking recall@k: the share of gold pairs among the candidates of rank <= k.

    Args:
        a, b: ``(p,)`` candidate pairs (row positions); rank: ``(p,)`` best kNN rank (1-based),
            NaN or 0 for pairs found only by code blocking.
        gold: ``(n,)`` gold labels.
        ks: the k values to report; ``"all"`` adds every candidate, code blocks included.
    """
    _, n_gold, _ = pairwise_counts(gold, gold)
    hit = gold_pair_mask(a, b, gold)
    rank = np.nan_to_num(np.asarray(rank, dtype=np.float64), nan=np.inf)
    rank = np.where(rank <= 0, np.inf, rank)
    out = {f"recall@{k}": float((hit & (rank <= k)).sum() / n_gold) if n_gold else 0.0 for k in ks}
    out["recall@candidates"] = float(hit.sum() / n_gold) if n_gold else 0.0
    return out


def cluster_metrics_with_noise(labels: np.ndarray, gold: np.ndarray) -> dict:
    """Metrics of a clustering with noise (HDBSCAN's ``-1``).

    Args:
        labels: ``(n,)`` int64 predicted cluster per row, ``-1`` for noise.
        gold: ``(n,)`` int64 gold cluster per row.

    Returns:
        :func:`cluster_metrics` with each noise row its own cluster, plus ``noise_fraction``
        and ``clustered_rows_ari`` / ``clustered_rows_nmi`` over the clustered rows only.
    """
    m = cluster_metrics(noise_as_singletons(labels), gold).as_dict()
    kept = labels >= 0
    m["noise_fraction"] = round(float(1.0 - kept.mean()) if len(labels) else 0.0, 4)
    if kept.sum() >= 2:
        m["clustered_rows_ari"] = round(float(adjusted_rand_score(gold[kept], labels[kept])), 4)
        m["clustered_rows_nmi"] = round(float(normalized_mutual_info_score(gold[kept], labels[kept])), 4)
    return m
