"""Per-pair similarity signals and the combined match score.

score = (w_embedding * cos(embeddings) + w_tfidf * cos(char n-gram TF-IDF)) / (w_embedding + w_tfidf)
        + w_code * code

where ``code`` is +1 when the two titles share a model code, +0.5 when one code extends the
other (``wh1000xm3`` / ``wh1000xm3b``), -1 when both carry codes and none agree, and 0 when
either has none. The score is not bounded to [0, 1]: a shared code lifts it above 1.

The default weights were chosen on the shared dev catalogs (Abt-Buy, WDC Products); see the
README's "How matching works" for the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class ScoreWeights:
    """Weights of the three signals in the combined score."""

    embedding: float = 0.5
    tfidf: float = 0.5
    code: float = 0.3


def code_similarity(x: frozenset[str], y: frozenset[str], min_prefix: int = 5) -> float:
    """+1 shared code; +0.5 one code is a prefix of the other (both >= ``min_prefix`` chars);
    -1 both have codes, none related; 0 either has none."""
    if not x or not y:
        return 0.0
    if x & y:
        return 1.0
    for p in x:
        for q in y:
            short, long_ = (p, q) if len(p) <= len(q) else (q, p)
            if len(short) >= min_prefix and long_.startswith(short):
                return 0.5
    return -1.0


def _rowwise_dense(e: np.ndarray, a: np.ndarray, b: np.ndarray, step: int = 262_144) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), step):
        out[s : s + step] = np.einsum("ij,ij->i", e[a[s : s + step]], e[b[s : s + step]])
    return out


def _rowwise_sparse(x: sp.csr_matrix, a: np.ndarray, b: np.ndarray, step: int = 262_144) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), step):
        out[s : s + step] = np.asarray(x[a[s : s + step]].multiply(x[b[s : s + step]]).sum(axis=1)).ravel()
    return out


def score_pairs(
    a: np.ndarray,
    b: np.ndarray,
    embeddings: np.ndarray,
    tfidf: sp.csr_matrix | None,
    codes: list[frozenset[str]] | None,
    weights: ScoreWeights = ScoreWeights(),
) -> dict[str, np.ndarray]:
    """Signals and combined score of the pairs ``(a[p], b[p])``.

    Args:
        a, b: ``(p,)`` int64 row positions.
        embeddings: ``(n, d)`` float32, L2-normalised.
        tfidf: ``(n, v)`` CSR with L2-normalised rows, or ``None`` to leave the signal out.
        codes: per row, its model codes, or ``None`` to leave the signal out.

    Returns:
        ``{"cos_embedding", "cos_tfidf", "code", "score"}`` (those computed), each ``(p,)``
        float32.
    """
    out: dict[str, np.ndarray] = {"cos_embedding": _rowwise_dense(embeddings, a, b)}
    score = weights.embedding * out["cos_embedding"]
    total = weights.embedding
    if tfidf is not None:
        out["cos_tfidf"] = _rowwise_sparse(tfidf, a, b)
        score = score + weights.tfidf * out["cos_tfidf"]
        total += weights.tfidf
    score = score / total  # a weighted mean of cosines, whichever are used
    if codes is not None:
        out["code"] = np.fromiter((code_similarity(codes[i], codes[j]) for i, j in zip(a, b)), np.float32, len(a))
        score = score + weights.code * out["code"]
    out["score"] = score.astype(np.float32)
    return out
