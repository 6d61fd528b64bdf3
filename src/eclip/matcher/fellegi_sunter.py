"""The Fellegi-Sunter model, learned per catalog without labels.

Fellegi and Sunter, "A Theory for Record Linkage", JASA 1969: each comparison ``c`` of a pair
falls in a level ``l``; ``m[c, l] = P(level l | match)`` and ``u[c, l] = P(level l |
non-match)``. With the comparisons taken as independent given the match status, a pair's
match weight is ``log2(lambda / (1 - lambda)) + sum_c log2(m[c, l_c] / u[c, l_c])`` and its
match probability ``2^w / (1 + 2^w)``. A comparison that does not apply (level ``-1``)
contributes nothing.

The parameters are learned as splink learns them (splink docs, "Estimating model
parameters"): ``u`` from random pairs of rows, which are almost all non-matches; then ``m``
and ``lambda`` (the share of matches among the candidate pairs) by expectation-maximisation
over the candidate pairs (Winkler, "Using the EM algorithm for weight computation in the
Fellegi-Sunter model of record linkage", 1988), ``u`` held fixed. Optionally ``u`` is
re-estimated by EM too (``fix_u=False``), starting from the random-pair estimate.

Cost: ``O(iterations x p x c)`` for ``p`` candidate pairs and ``c`` comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eclip.matcher.comparisons import Comparison

#: Pseudo-count added to every level when estimating m and u (keeps log-ratios finite).
PSEUDO_COUNT = 1.0
#: Bounds on lambda, so that a degenerate start cannot absorb every pair in one class.
LAMBDA_BOUNDS = (1e-6, 0.999)


@dataclass
class FellegiSunterModel:
    """Learned parameters.

    Attributes:
        comparisons: the comparisons, in column order of the level matrices.
        m, u: per comparison, ``(levels,)`` float64 probabilities of each level among
            matches and among non-matches.
        prior: ``lambda``, the share of matches among the candidate pairs.
        iterations: EM iterations run; converged: whether the change fell below tolerance.
    """

    comparisons: list[Comparison]
    m: list[np.ndarray]
    u: list[np.ndarray]
    prior: float
    iterations: int = 0
    converged: bool = False
    history: list[float] = field(default_factory=list)

    def log2_bayes_factors(self, levels: np.ndarray) -> np.ndarray:
        """``(p, c)`` float64 ``log2(m / u)`` of each pair's level per comparison, 0 where the
        comparison does not apply."""
        out = np.zeros(levels.shape, dtype=np.float64)
        for c in range(levels.shape[1]):
            lv = levels[:, c]
            ok = lv >= 0
            out[ok, c] = np.log2(self.m[c][lv[ok]] / self.u[c][lv[ok]])
        return out

    def match_weight(self, levels: np.ndarray) -> np.ndarray:
        """``(p,)`` float64 match weights (log2 odds of a match) of ``(p, c)`` int8 levels."""
        return np.log2(self.prior / (1.0 - self.prior)) + self.log2_bayes_factors(levels).sum(axis=1)

    def match_probability(self, levels: np.ndarray) -> np.ndarray:
        """``(p,)`` float32 posterior probability that each pair is a match."""
        w = np.clip(self.match_weight(levels), -60, 60)
        return (1.0 / (1.0 + np.exp2(-w))).astype(np.float32)

    def as_dict(self) -> dict:
        """The learned parameters, for the manifest: per comparison and level, m, u and the
        log2 Bayes factor."""
        return {
            "prior_match_share_among_candidates": round(float(self.prior), 6),
            "em_iterations": self.iterations,
            "em_converged": self.converged,
            "comparisons": {
                comp.name: {
                    lab: {
                        "m": round(float(m_), 5),
                        "u": round(float(u_), 6),
                        "log2_bayes_factor": round(float(np.log2(m_ / u_)), 3),
                    }
                    for lab, m_, u_ in zip(comp.levels, m, u)
                }
                for comp, m, u in zip(self.comparisons, self.m, self.u)
            },
        }


def level_frequencies(
    levels: np.ndarray, n_levels: list[int], weights: np.ndarray | None = None, pseudo: float = PSEUDO_COUNT
) -> list[np.ndarray]:
    """Per comparison, the (weighted) share of each level among the pairs where it applies,
    with ``pseudo`` counts spread over the levels: ``(levels,)`` float64 each."""
    w = np.ones(len(levels)) if weights is None else weights
    out = []
    for c, k in enumerate(n_levels):
        lv = levels[:, c]
        ok = lv >= 0
        counts = np.bincount(lv[ok], weights=w[ok], minlength=k)[:k] + pseudo / k
        out.append(counts / counts.sum())
    return out


def _initial_m(n_levels: list[int]) -> list[np.ndarray]:
    """A starting m that puts most mass on the strongest level (level 0), halving per level."""
    return [(lambda v: v / v.sum())(0.5 ** np.arange(k, dtype=np.float64)) for k in n_levels]


def fit_fellegi_sunter(
    comparisons: list[Comparison],
    candidate_levels: np.ndarray,
    random_levels: np.ndarray,
    fix_u: bool = True,
    max_iter: int = 100,
    tol: float = 1e-5,
    prior: float | None = None,
) -> FellegiSunterModel:
    """Learn m, u and lambda without labels.

    Args:
        comparisons: the comparisons (columns of the level matrices).
        candidate_levels: ``(p, c)`` int8 levels of the candidate pairs (``-1`` missing).
        random_levels: ``(r, c)`` int8 levels of random pairs of rows; their level shares
            estimate ``u``.
        fix_u: keep ``u`` at the random-pair estimate (splink's default); else EM updates it.
        max_iter, tol: EM stops after ``max_iter`` iterations or when no parameter moves by
            more than ``tol``.
        prior: starting lambda; default: the share of candidates whose first comparison is
            at its strongest level, clipped to [0.01, 0.5].

    Returns:
        The fitted :class:`FellegiSunterModel`.

    Raises:
        ValueError: the matrices do not have one column per comparison.
    """
    n_levels = [len(c.levels) for c in comparisons]
    if candidate_levels.shape[1] != len(comparisons) or random_levels.shape[1] != len(comparisons):
        raise ValueError(f"level matrices need {len(comparisons)} columns, one per comparison")
    u = level_frequencies(random_levels, n_levels)
    m = _initial_m(n_levels)
    if prior is None:
        prior = float(np.clip(np.mean(candidate_levels[:, 0] == 0) if len(candidate_levels) else 0.1, 0.01, 0.5))
    model = FellegiSunterModel(comparisons, m, u, prior)
    if not len(candidate_levels):
        return model
    for it in range(1, max_iter + 1):
        w = model.match_probability(candidate_levels).astype(np.float64)  # E-step
        new_prior = float(np.clip(w.mean(), *LAMBDA_BOUNDS))
        new_m = level_frequencies(candidate_levels, n_levels, w)  # M-step
        new_u = model.u if fix_u else level_frequencies(candidate_levels, n_levels, 1.0 - w)
        delta = max(
            [abs(new_prior - model.prior)]
            + [float(np.abs(a - b).max()) for a, b in zip(new_m + new_u, model.m + model.u)]
        )
        model = FellegiSunterModel(comparisons, new_m, new_u, new_prior, it, delta < tol, model.history + [delta])
        if model.converged:
            break
    return model


def random_pairs(n: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random pairs of distinct rows among ``n`` (with replacement across pairs):
    ``(a, b)`` int64, ``a != b``."""
    rng = np.random.default_rng(seed)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = rng.integers(0, n, count)
    b = rng.integers(0, n - 1, count)
    b = b + (b >= a)  # skip a itself
    return a.astype(np.int64), b.astype(np.int64)
