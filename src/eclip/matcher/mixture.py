"""Match probabilities learned from each catalog's own candidate scores, without labels.

The scores of a catalog's candidate pairs come from two populations: pairs of the same
product and pairs of look-alikes that the kNN search also returned. A two-component Gaussian
mixture fitted to the scores by EM (scikit-learn's ``GaussianMixture``; Dempster, Laird and
Rubin, 1977) separates them; a pair's match probability is the posterior of the component
with the higher mean, made monotone in the score (a higher score never gets a lower
probability). The learned threshold is the lowest score whose probability reaches 0.5.

This replaces a threshold fixed on the dev catalogs: where the two populations sit moves
with the catalog (its language, how alike its variants are, the model), and the mixture
follows them. It is the "two-component mixture" alternative to Fellegi-Sunter weights
(:mod:`eclip.matcher.fellegi_sunter`); README "How matching works" compares them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eclip.matcher.grouping import choose_method

#: Largest number of scores the mixture is fitted on (a uniform sample above it).
MAX_FIT_SCORES = 200_000


@dataclass(frozen=True)
class ScoreMixture:
    """A fitted two-component mixture over pair scores.

    Attributes:
        means, stds, weights: ``(non-match, match)`` component parameters.
        threshold: the lowest score whose match probability is >= 0.5.
        fitted_on: number of scores fitted.
    """

    means: tuple[float, float]
    stds: tuple[float, float]
    weights: tuple[float, float]
    threshold: float
    fitted_on: int

    def probability(self, score: np.ndarray) -> np.ndarray:
        """``(p,)`` float32 match probability of ``(p,)`` scores; NaN and ``-inf`` give 0."""
        x = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
        finite = np.isfinite(x)
        out = np.zeros(len(x), dtype=np.float64)
        xs = x[finite]
        log_lik = [
            np.log(w) - np.log(s) - 0.5 * ((xs - m) / s) ** 2 for m, s, w in zip(self.means, self.stds, self.weights)
        ]
        out[finite] = 1.0 / (1.0 + np.exp(np.clip(log_lik[0] - log_lik[1], -500, 500)))
        # monotone around the decision: at or above the threshold >= 0.5, below it < 0.5 (a
        # narrow match component must not hand the far right tail back to the non-matches)
        out[finite & (x >= self.threshold)] = np.maximum(out[finite & (x >= self.threshold)], 0.5)
        out[finite & (x < self.threshold)] = np.minimum(out[finite & (x < self.threshold)], 0.5 - 1e-6)
        return out.astype(np.float32)

    def as_dict(self) -> dict:
        """What was learned, for the manifest."""
        return {
            "model": "two-component Gaussian mixture on candidate scores",
            "non_match": {
                "mean": round(self.means[0], 4),
                "std": round(self.stds[0], 4),
                "weight": round(self.weights[0], 4),
            },
            "match": {
                "mean": round(self.means[1], 4),
                "std": round(self.stds[1], 4),
                "weight": round(self.weights[1], 4),
            },
            "threshold_at_probability_0.5": round(self.threshold, 4),
            "fitted_on_pairs": self.fitted_on,
        }


def fit_score_mixture(score: np.ndarray, seed: int = 0) -> ScoreMixture | None:
    """Fit the mixture to ``(p,)`` candidate scores (NaN and infinite scores are left out).

    Returns:
        The mixture, or ``None`` when fewer than 10 finite scores, or fewer than 2 distinct
        values, leave nothing to learn (the caller keeps its fixed threshold).
    """
    from sklearn.mixture import GaussianMixture

    x = np.asarray(score, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 10 or np.ptp(x) <= 0:
        return None
    if len(x) > MAX_FIT_SCORES:
        x = np.random.default_rng(seed).choice(x, MAX_FIT_SCORES, replace=False)
    gm = GaussianMixture(2, random_state=seed, reg_covar=1e-4).fit(x[:, None])
    order = np.argsort(gm.means_.ravel())
    means = tuple(float(v) for v in gm.means_.ravel()[order])
    stds = tuple(float(np.sqrt(v)) for v in gm.covariances_.ravel()[order])
    weights = tuple(float(v) for v in gm.weights_[order])
    # the 0.5 crossing between the two means (the posterior's decision boundary)
    grid = np.linspace(means[0], means[1], 4001)
    lik = [np.log(w) - np.log(s) - 0.5 * ((grid - m) / s) ** 2 for m, s, w in zip(means, stds, weights)]
    above = np.flatnonzero(lik[1] >= lik[0])
    threshold = float(grid[above[0]]) if len(above) else means[1]
    return ScoreMixture(means, stds, weights, threshold, int(len(x)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class MatchSettings:
    """How a catalog's candidate pairs are grouped, and where each setting came from.

    Attributes:
        method: the grouping method run (``auto`` resolved).
        threshold: the threshold used, on ``on``.
        on: ``match_probability`` (learned) or ``score`` (a given threshold, or no mixture).
        probability: ``(p,)`` float32 match probability per candidate pair (NaN without a
            mixture).
        learned: what was learned, for the manifest.
    """

    method: str
    threshold: float
    on: str
    probability: np.ndarray
    learned: dict


def learn_settings(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    method: str,
    threshold: float | None,
    fallback_threshold: float,
) -> MatchSettings:
    """Learn a catalog's match probabilities and grouping settings from its candidate pairs.

    Args:
        n: rows; a, b, score: ``(p,)`` candidate pairs (row positions) and their scores.
        method: a grouping method, or ``auto`` (chosen by
            :func:`eclip.matcher.grouping.choose_method` from the probabilities).
        threshold: a given threshold on the raw score (``--threshold``, a calibration), which
            overrides the learned one; ``None`` groups the probabilities at 0.5.
        fallback_threshold: the score threshold used when nothing can be learned.

    Returns:
        The settings; ``learned`` records the mixture, the expected matches per row and why
        the method and threshold are what they are.
    """
    mixture = fit_score_mixture(score)
    prob = mixture.probability(score) if mixture is not None else np.full(len(score), np.nan, np.float32)
    learned: dict = {"mixture": mixture.as_dict() if mixture is not None else None}
    chosen_from = None
    if method == "auto":
        if mixture is None:
            method, chosen_from = "mutual", "no mixture could be fitted: mutual"
        else:
            method, median = choose_method(n, a, b, prob)
            learned["median_expected_matches_per_likely_row"] = round(median, 3)
            chosen_from = (
                f"median expected matches {median:.2f} {'>' if method == 'average' else '<='} threshold of auto"
            )
    learned["method_chosen_by"] = chosen_from or "given"
    if threshold is not None:
        return MatchSettings(method, float(threshold), "score", prob, {**learned, "threshold_from": "given"})
    if mixture is None:
        return MatchSettings(
            method,
            float(fallback_threshold),
            "score",
            prob,
            {**learned, "threshold_from": "fixed default (too few candidate pairs to learn from)"},
        )
    return MatchSettings(
        method, 0.5, "match_probability", prob, {**learned, "threshold_from": "learned: match probability 0.5"}
    )
