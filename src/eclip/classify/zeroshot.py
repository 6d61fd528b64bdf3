"""Zero-shot classification from label names: prompt ensembling, then cosine ranking.

Each label is written into several prompt templates; the prompts are embedded with the text
tower of the model that embedded the catalog, each prompt vector is L2-normalised, the
vectors are averaged and the mean is normalised again ("prompt ensembling", Radford et al.,
*Learning Transferable Visual Models From Natural Language Supervision*, 2021, section
3.1.4). A row's score for a label is the cosine between the row's vector (text, image or
fused) and the label vector; probabilities are the softmax of ``logit_scale x cosine``
over the labels competing at that level.

A taxonomy is classified level by level (top-down): first among the top-level categories,
then among the children of the chosen one, and so on. A parent's vector blends its own name
with its leaves (:func:`taxonomy_vectors`). A row stops descending when its best
cosine at a level is below ``min_score``; a row that stops at the first level is
``unknown``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from eclip.classify.labels import Taxonomy

#: Default prompt templates for product labels (``{}`` is the label). They are worded for
#: product titles and product photos alike; the bare label is one of them.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a product photo of {}.",
    "{} for sale in an online shop.",
    "a listing in the category {}.",
    "buy {} online.",
)
#: CLIP's logit scale (1 / temperature 0.01): sharpens cosines into probabilities.
DEFAULT_LOGIT_SCALE = 100.0
UNKNOWN = "unknown"
#: How a taxonomy is classified: level by level (top-down), or one choice among the leaves.
Hierarchy = Literal["levels", "leaves"]
_CHUNK = 8192


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def ensemble(prompt_vectors: np.ndarray) -> np.ndarray:
    """Prompt ensembling: ``(L, T, d)`` prompt embeddings -> ``(L, d)`` float32 label vectors.

    Each prompt vector is L2-normalised, the ``T`` vectors of a label are averaged, and the
    mean is L2-normalised (CLIP, Radford et al. 2021, section 3.1.4).

    Raises:
        ValueError: ``prompt_vectors`` is not 3-dimensional.
    """
    if prompt_vectors.ndim != 3:
        raise ValueError(f"prompt vectors must be (labels, templates, dim); got shape {prompt_vectors.shape}.")
    return _normalise(_normalise(prompt_vectors.astype(np.float32)).mean(axis=1))


def prompts(names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[str]:
    """Every template filled with every name, label-major: ``len(names) x len(templates)``.

    Raises:
        ValueError: no templates, or a template without ``{}``.
    """
    if not templates:
        raise ValueError("at least one prompt template is needed.")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"prompt template(s) {bad} lack the '{{}}' placeholder for the label.")
    return [t.format(n) for n in names for t in templates]


def label_vectors(
    encode: Callable[[list[str]], np.ndarray], names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
) -> np.ndarray:
    """``(L, d)`` float32 L2-normalised label vectors: ``encode`` (a text encoder's
    ``encode``, returning ``(m, d)`` float32) applied to :func:`prompts`, then :func:`ensemble`."""
    vecs = np.asarray(encode(prompts(names, templates)), dtype=np.float32)
    return ensemble(vecs.reshape(len(names), len(templates), -1))


def taxonomy_vectors(taxonomy: Taxonomy, own: np.ndarray) -> np.ndarray:
    """Node vectors that describe a parent by its leaves as well as by its own name.

    A top-level name such as "Accessories" or "Personal Care" says little; its leaves say
    what it holds. Each inner node's vector is ``normalise(normalise(mean of its descendant
    leaves' vectors) + own vector)``; leaves keep their own vector.

    Args:
        taxonomy: the labels. own: ``(len(taxonomy.paths), d)`` float32 L2-normalised
            vectors of each node's own name (see :func:`label_vectors`).

    Returns:
        ``(len(taxonomy.paths), d)`` float32, L2-normalised.
    """
    index = {p: i for i, p in enumerate(taxonomy.paths)}
    out = own.copy()
    leaves = taxonomy.leaves
    for p in taxonomy.paths:
        below = [index[leaf] for leaf in leaves if len(leaf) > len(p) and leaf[: len(p)] == p]
        if below:
            out[index[p]] = _normalise(_normalise(own[below].mean(axis=0)) + own[index[p]])
    return out


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis`` as float32 (``scipy.special.softmax``)."""
    from scipy.special import softmax as _softmax

    return _softmax(logits, axis=axis).astype(np.float32)


@dataclass
class Predictions:
    """Per-row predictions (``n`` rows).

    Attributes:
        label: the predicted label (a taxonomy path ``"A > B"``), or ``"unknown"``.
        depth: ``(n,)`` int64 taxonomy levels accepted (0: unknown).
        score: ``(n,)`` float32 score of the predicted label (cosine for zero-shot, the
            probability with a probe); for ``unknown`` rows the best rejected score.
        probability: ``(n,)`` float32 softmax probability of that label among its siblings.
        top_labels: per row, the ``k`` best labels at the last level tried, best first.
        top_scores: ``(n, k)`` float32 their scores.
    """

    label: list[str]
    depth: np.ndarray
    score: np.ndarray
    probability: np.ndarray
    top_labels: list[list[str]]
    top_scores: np.ndarray


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """``(n, k)`` column indices of the ``k`` largest scores per row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def classify_taxonomy(
    x: np.ndarray,
    taxonomy: Taxonomy,
    node_vectors: np.ndarray,
    k: int = 5,
    min_score: float | None = None,
    logit_scale: float = DEFAULT_LOGIT_SCALE,
) -> Predictions:
    """Zero-shot classification of rows, level by level through ``taxonomy``.

    Args:
        x: ``(n, d)`` float32 L2-normalised row vectors.
        taxonomy: the labels (a flat list is a taxonomy of depth 1).
        node_vectors: ``(len(taxonomy.paths), d)`` float32 L2-normalised label vectors, in
            ``taxonomy.paths`` order (see :func:`label_vectors`).
        k: labels kept in ``top_labels`` (among the siblings of the last level tried).
        min_score: a row whose best cosine at a level is below this stops there; at the
            first level it becomes ``unknown``. ``None``: never stop early.
        logit_scale: multiplies cosines before the softmax over siblings.

    Raises:
        ValueError: ``node_vectors`` does not match the taxonomy or the row dimension.
    """
    if node_vectors.shape[0] != len(taxonomy.paths) or (len(x) and node_vectors.shape[1] != x.shape[1]):
        raise ValueError(
            f"node vectors {node_vectors.shape} do not fit {len(taxonomy.paths)} labels of dim {x.shape[1] if len(x) else '?'}."
        )
    n = len(x)
    index = {p: i for i, p in enumerate(taxonomy.paths)}
    names = [taxonomy.name(p) for p in taxonomy.paths]
    node = np.full(n, -1, dtype=np.int64)  # accepted node per row (-1: none yet)
    depth = np.zeros(n, dtype=np.int64)
    score = np.zeros(n, dtype=np.float32)
    prob = np.zeros(n, dtype=np.float32)
    k_eff = max(1, k)
    top_idx = np.full((n, k_eff), -1, dtype=np.int64)
    top_sc = np.full((n, k_eff), np.nan, dtype=np.float32)
    active = np.ones(n, dtype=bool)  # rows still descending
    for level in range(1, taxonomy.depth + 1):
        parents = np.where(active, node, -2)
        for parent in np.unique(parents[parents > -2]):
            kids = taxonomy.children.get(taxonomy.paths[parent] if parent >= 0 else (), ())
            rows = np.flatnonzero(parents == parent)
            if not kids:  # a leaf: done
                active[rows] = False
                continue
            cand = np.array([index[c] for c in kids], dtype=np.int64)
            for lo in range(0, len(rows), _CHUNK):
                r = rows[lo : lo + _CHUNK]
                cos = x[r] @ node_vectors[cand].T
                best = cos.argmax(axis=1)
                best_cos = cos[np.arange(len(r)), best]
                best_p = softmax(logit_scale * cos)[np.arange(len(r)), best]
                t = _top(cos, k_eff)
                top_idx[r] = -1
                top_sc[r] = np.nan
                top_idx[r, : t.shape[1]] = cand[t]
                top_sc[r, : t.shape[1]] = np.take_along_axis(cos, t, axis=1)
                ok = best_cos >= min_score if min_score is not None else np.ones(len(r), dtype=bool)
                acc = r[ok]
                node[acc] = cand[best[ok]]
                depth[acc] = level
                score[acc] = best_cos[ok]
                prob[acc] = best_p[ok]
                active[r[~ok]] = False
                first = ~ok & (depth[r] == 0)  # stopped at the first level: unknown, keeps its best rejected score
                score[r[first]] = best_cos[first]
                prob[r[first]] = best_p[first]
        if not active.any():
            break
    label = [names[i] if i >= 0 else UNKNOWN for i in node]
    tops = [[names[j] for j in row if j >= 0] for row in top_idx]
    return Predictions(label=label, depth=depth, score=score, probability=prob, top_labels=tops, top_scores=top_sc)


def flat_predictions(
    names: Sequence[str], scores: np.ndarray, probability: np.ndarray, k: int = 5, min_score: float | None = None
) -> Predictions:
    """Predictions over one flat label set from ``(n, L)`` scores (e.g. probe or combined
    probabilities) and ``(n, L)`` probabilities; ``min_score`` applies to ``scores``."""
    n = len(scores)
    t = _top(scores, max(1, k)) if n else np.zeros((0, 1), dtype=np.int64)
    best = t[:, 0] if n else np.zeros(0, dtype=np.int64)
    rows = np.arange(n)
    best_score = scores[rows, best].astype(np.float32)
    ok = best_score >= min_score if min_score is not None else np.ones(n, dtype=bool)
    return Predictions(
        label=[names[b] if o else UNKNOWN for b, o in zip(best, ok)],
        depth=ok.astype(np.int64),
        score=best_score,
        probability=probability[rows, best].astype(np.float32),
        top_labels=[[names[j] for j in row] for row in t],
        top_scores=np.take_along_axis(scores, t, axis=1).astype(np.float32) if n else np.zeros((0, 1), np.float32),
    )


def predictions_frame(ids: list[str], present: np.ndarray, pred: Predictions, in_train: np.ndarray) -> pl.DataFrame:
    """``predictions.parquet``: every row once.

    Args:
        ids: the ``n`` row ids. present: ``(n,)`` bool, rows that have vectors (``pred``
            holds their predictions, in row order). in_train: ``(n,)`` bool, rows that
            trained the probe.

    Returns:
        Columns id, label, score, probability (float32), depth, top_labels, top_scores,
        status (``predicted`` / ``unknown`` / ``no_vector``), in_train.
    """
    n = len(ids)
    rows = np.flatnonzero(present)
    label = np.full(n, UNKNOWN, dtype=object)
    label[rows] = pred.label
    status = np.full(n, "no_vector", dtype=object)
    status[rows] = np.where(pred.depth > 0, "predicted", "unknown")

    def spread(a: np.ndarray, dtype: Any, fill: Any) -> np.ndarray:
        full = np.full(n, fill, dtype=dtype)
        full[rows] = a
        return full

    tops: list[list[str]] = [[] for _ in range(n)]
    top_sc: list[list[float]] = [[] for _ in range(n)]
    for j, r in enumerate(rows):
        tops[r] = pred.top_labels[j]
        top_sc[r] = [float(v) for v in pred.top_scores[j][: len(pred.top_labels[j])]]
    return pl.DataFrame(
        {
            "id": ids,
            "label": label.tolist(),
            "score": spread(pred.score, np.float32, np.nan),
            "probability": spread(pred.probability, np.float32, np.nan),
            "depth": spread(pred.depth, np.int64, 0),
            "top_labels": tops,
            "top_scores": top_sc,
            "status": status.tolist(),
            "in_train": in_train,
        },
        schema={
            "id": pl.String,
            "label": pl.String,
            "score": pl.Float32,
            "probability": pl.Float32,
            "depth": pl.Int64,
            "top_labels": pl.List(pl.String),
            "top_scores": pl.List(pl.Float32),
            "status": pl.String,
            "in_train": pl.Boolean,
        },
    )
