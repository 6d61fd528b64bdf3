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
(:mod:`eclip.matcher.fellegi_sunter`); docs/how-matching-works.md compares them.

A mixture on one score always finds two halves, whether or not the catalog holds duplicates:
in a catalog without any, or one where most candidates are near-twins of another product,
its "match" component is the upper half of the look-alikes, and its boundary falls far too
low (a raw score of 0.09 on 100 Abt-Buy rows without a single duplicate). So the boundary is
never below :data:`MIN_MATCH_SCORE`: when it is, the fitted mixture is moved up the score
axis until it is (:meth:`ScoreMixture.floored`), which keeps its shape and moves its
probabilities with it. The floor was chosen leave-one-catalog-out on the dev suite
(``bench/transfer.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eclip.matcher.grouping import AUTO_GROUP_SHARE, auto_choice

#: Largest number of scores the mixture is fitted on (a uniform sample above it).
MAX_FIT_SCORES = 200_000
#: Lowest raw score the learned decision boundary may take (see the module docstring):
#: chosen leave-one-catalog-out over the dev suite by ``bench/transfer.py``.
MIN_MATCH_SCORE = 0.65


@dataclass(frozen=True)
class ScoreMixture:
    """A fitted two-component mixture over pair scores.

    Attributes:
        means, stds, weights: ``(non-match, match)`` component parameters.
        threshold: the lowest score whose match probability is >= 0.5.
        fitted_on: number of scores fitted.
        moved_by: how far up the score axis the fitted mixture was moved to keep its
            boundary at the floor (:meth:`floored`); 0 when it was not.
    """

    means: tuple[float, float]
    stds: tuple[float, float]
    weights: tuple[float, float]
    threshold: float
    fitted_on: int
    moved_by: float = 0.0

    def floored(self, min_score: float) -> "ScoreMixture":
        """The mixture moved up the score axis so that its boundary is at least
        ``min_score`` (itself when it already is): both means and the threshold move by the
        same amount, so the posterior is the fitted one, read ``moved_by`` lower."""
        delta = float(min_score) - self.threshold
        if delta <= 0:
            return self
        return ScoreMixture(
            (self.means[0] + delta, self.means[1] + delta),
            self.stds,
            self.weights,
            self.threshold + delta,
            self.fitted_on,
            self.moved_by + delta,
        )

    def _posterior(self, x: np.ndarray) -> np.ndarray:
        log_lik = [
            np.log(w) - np.log(s) - 0.5 * ((x - m) / s) ** 2 for m, s, w in zip(self.means, self.stds, self.weights)
        ]
        return 1.0 / (1.0 + np.exp(np.clip(log_lik[0] - log_lik[1], -500, 500)))

    def probability(self, score: np.ndarray) -> np.ndarray:
        """``(p,)`` float32 match probability of ``(p,)`` scores; NaN and ``-inf`` give 0.

        The posterior of the match component, made monotone in the score: with unequal
        variances the wider component wins both tails, so the raw posterior rises again far
        below the boundary (and can fall far above it). Below the threshold a score gets
        the lowest posterior between it and the threshold (and < 0.5), above it the
        highest between the threshold and it (and >= 0.5).
        """
        x = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
        finite = np.isfinite(x)
        out = np.zeros(len(x), dtype=np.float64)
        xs = x[finite]
        if not len(xs):
            return out.astype(np.float32)
        lo, hi = min(float(xs.min()), self.threshold), max(float(xs.max()), self.threshold)
        below = np.linspace(lo, self.threshold, 2001)
        above = np.linspace(self.threshold, hi, 2001)
        env_below = np.minimum(np.minimum.accumulate(self._posterior(below)[::-1])[::-1], 0.5 - 1e-6)
        env_above = np.maximum(np.maximum.accumulate(self._posterior(above)), 0.5)
        out[finite] = np.where(xs >= self.threshold, np.interp(xs, above, env_above), np.interp(xs, below, env_below))
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
            "moved_up_to_the_floor_by": round(self.moved_by, 4),
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
        average_labels: ``(n,)`` int64 groups that ``auto`` had average linkage make on
            ``on`` at ``threshold`` when it chose ``average`` (``None`` otherwise), for
            :func:`eclip.matcher.grouping.group` to reuse.
    """

    method: str
    threshold: float
    on: str
    probability: np.ndarray
    learned: dict
    average_labels: np.ndarray | None = None


def learn_settings(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
    method: str,
    threshold: float | None,
    fallback_threshold: float,
    min_match_score: float = MIN_MATCH_SCORE,
    auto_group_share: float = AUTO_GROUP_SHARE,
    fit_on: np.ndarray | None = None,
) -> MatchSettings:
    """Learn a catalog's match probabilities and grouping settings from its candidate pairs.

    Args:
        n: rows; a, b, score: ``(p,)`` candidate pairs (row positions) and their scores.
        method: a grouping method, or ``auto`` (chosen by
            :func:`eclip.matcher.grouping.choose_method` from the groups average linkage
            makes at the threshold).
        threshold: a given threshold on the raw score (``--threshold``, a calibration), which
            overrides the learned one; ``None`` groups the probabilities at 0.5.
        fallback_threshold: the score threshold used when nothing can be learned.
        min_match_score: the floor of the learned boundary (:data:`MIN_MATCH_SCORE`).
        auto_group_share: ``auto``'s rule (:data:`eclip.matcher.grouping.AUTO_GROUP_SHARE`).
        fit_on: ``(p,)`` the scores the mixture is fitted to (default ``score``): the scores
            before conflict penalties (:func:`eclip.matcher.signals.conflict_penalty`). The
            probabilities are still read at ``score``. Penalties put a tail far below the
            look-alikes (a quantity conflict costs 0.8); fitted to it, the non-match component
            widens to cover it and the match component shrinks to the spike of shared codes
            (on ``bench/scale.py``'s 1M rows: boundary 1.09 instead of 0.70, recall 0.80).

    Returns:
        The settings; ``learned`` records the mixture, the expected matches per row and why
        the method and threshold are what they are.
    """
    fitted = fit_score_mixture(score if fit_on is None else fit_on)
    mixture = fitted.floored(min_match_score) if fitted is not None else None
    prob = mixture.probability(score) if mixture is not None else np.full(len(score), np.nan, np.float32)
    learned: dict = {"mixture": mixture.as_dict() if mixture is not None else None}
    if mixture is not None:
        learned["expected_matches_per_row"] = round(float(2.0 * np.nansum(prob) / max(n, 1)), 4)
    chosen_from = None
    average_labels = None
    if method == "auto":
        on, at = (score, float(threshold)) if threshold is not None else (prob, 0.5)
        if threshold is None and mixture is None:
            on, at = score, float(fallback_threshold)
        method, share, labels = auto_choice(n, a, b, on, at, auto_group_share)
        if method == "average" and not np.isnan(on).any():  # grouping would see the same scores
            average_labels = labels
        learned["auto_share_of_grouped_rows_in_groups_of_3_or_more"] = round(share, 4)
        chosen_from = (
            f"average linkage puts {share:.0%} of its grouped rows in groups of 3 or more "
            f"({'>=' if method == 'average' else '<'} {auto_group_share:.0%}): "
            f"{'a catalog of groups, average' if method == 'average' else 'a catalog of pairs, mutual'}"
        )
    learned["method_chosen_by"] = chosen_from or "given"
    if threshold is not None:
        return MatchSettings(
            method, float(threshold), "score", prob, {**learned, "threshold_from": "given"}, average_labels
        )
    if mixture is None:
        return MatchSettings(
            method,
            float(fallback_threshold),
            "score",
            prob,
            {**learned, "threshold_from": "fixed default (too few candidate pairs to learn from)"},
            average_labels,
        )
    learned["threshold_from"] = "learned: match probability 0.5"
    return MatchSettings(method, 0.5, "match_probability", prob, learned, average_labels)
