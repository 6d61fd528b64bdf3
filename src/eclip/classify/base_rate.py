"""A catalog's base rate of a class, estimated from its unlabelled score distribution.

A zero-shot score's meaning moves with the share of positives in the catalog: at a 0.2 %
base rate, a threshold that is 98 % precise at 9 % flags several negatives per positive.
This module fits the catalog's own scores as a two-class mixture (McLachlan and Peel,
*Finite Mixture Models*, 2000, chapter 2; the EM algorithm of Dempster, Laird and Rubin,
1977)::

    f(s) = (1 - pi) * sum_k w_k N(s; mu_k, sd_k)  +  pi * N(s; mu_+, sd_+)

The negatives ("null") are a small Gaussian mixture whose means stay at or below the score's
decision ``boundary``, the positives one Gaussian whose mean stays at or above it (for the
adult margin the boundary is 0: there, the nearest concept changes from an ordinary
category to an adult one). ``pi`` is the estimated base rate; ``pi f_+(s) / f(s)`` is each
row's posterior probability of being positive *at this catalog's base rate*, which is the
prior adjustment of Saerens, Latinne and Decaestecker (Neural Computation 14(1), 2002) done
by the mixture directly. A threshold is then the lowest score at which the expected
precision of the flagged rows, the mean posterior above it, reaches the target.

EM runs on a fine histogram of the scores (bin centres weighted by counts), so its cost does
not grow with the rows: a 10-million-row catalog fits as fast as a 10-thousand-row one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from eclip.errors import EclipError

#: Null (negative) components: a bulk and a shoulder, enough for the skewed score
#: distributions of product catalogs without giving the null room to swallow the positives.
NULL_COMPONENTS = 2
#: Histogram bins for EM; the error from binning is below 1/1000 of the score range.
BINS = 4096
#: Lower bound on every component's standard deviation, as a share of the scores' standard
#: deviation: keeps a component from collapsing onto a few identical scores (duplicate rows).
MIN_SD_SHARE = 0.15


@dataclass(frozen=True)
class ScoreMixture:
    """A two-class mixture fitted to scores (see the module docstring).

    Attributes:
        base_rate: ``pi``, the estimated share of positive rows, in [0, 1].
        positive: ``(mean, sd)`` of the positive component (score units).
        null_means, null_sds, null_weights: the null components (weights sum to 1).
        boundary: the score the components' means are held on either side of.
        rows: scores fitted; iterations: EM iterations run; converged: log-likelihood change
            fell below the tolerance.
    """

    base_rate: float
    positive: tuple[float, float]
    null_means: tuple[float, ...]
    null_sds: tuple[float, ...]
    null_weights: tuple[float, ...]
    boundary: float
    rows: int
    iterations: int
    converged: bool

    def _densities(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy.stats import norm

        s = np.asarray(s, dtype=np.float64)
        null = sum(w * norm.pdf(s, m, sd) for w, m, sd in zip(self.null_weights, self.null_means, self.null_sds))
        return (1.0 - self.base_rate) * null, self.base_rate * norm.pdf(s, *self.positive)

    def posterior(self, scores: np.ndarray) -> np.ndarray:
        """``(n,)`` float64 probability that each score is a positive, at the fitted base rate,
        made non-decreasing in the score (a higher score is never less likely positive, which
        two Gaussians of different widths would otherwise allow in their far tails).

        Args:
            scores: ``(n,)`` float scores.
        """
        s = np.asarray(scores, dtype=np.float64)
        if not len(s):
            return np.zeros(0)
        null, pos = self._densities(s)
        with np.errstate(invalid="ignore", divide="ignore"):
            post = np.where(pos + null > 0, pos / (pos + null), (s >= self.positive[0]).astype(np.float64))
        order = np.argsort(s, kind="stable")
        post[order] = np.maximum.accumulate(post[order])
        return post

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, rounded for the manifest."""
        d = asdict(self)
        return {
            k: (round(v, 6) if isinstance(v, float) else [round(x, 6) for x in v] if isinstance(v, tuple) else v)
            for k, v in d.items()
        }


#: How wide the positive component may be: ``free`` (its own width, the base-rate estimate)
#: or ``widest`` (at least as wide as the widest null component, the upper end of the
#: base-rate interval: see :func:`base_rate_interval`).
PositiveWidth = Literal["free", "widest"]


def _histogram(s: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Bin centres holding scores, their counts (float64) and the components' width floor."""
    counts, edges = np.histogram(s, bins=bins)
    keep = counts > 0
    floor = max(MIN_SD_SHARE * float(s.std()), 2 * float(edges[1] - edges[0]))
    return ((edges[:-1] + edges[1:]) / 2)[keep], counts[keep].astype(np.float64), floor


def _start(s: np.ndarray, boundary: float, k: int, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial means, widths and weights: null components on quantiles of the scores below the
    boundary, the positive on the scores above it (or one floor above the boundary when none are)."""
    below, above = s[s < boundary], s[s >= boundary]
    below = below if len(below) else s
    mu = np.r_[
        np.minimum(np.quantile(below, (2 * np.arange(k) + 1) / (2 * k)), boundary),
        max(float(above.mean()) if len(above) else boundary + floor, boundary),
    ]
    sd = np.r_[
        np.full(k, max(float(below.std()) / k, floor)), max(float(above.std()) if len(above) > 1 else floor, floor)
    ]
    pi0 = min(max(len(above) / len(s), 1e-4), 0.5)
    return mu, sd, np.r_[np.full(k, (1 - pi0) / k), pi0]


def _em(
    x: np.ndarray,
    w: np.ndarray,
    start: tuple[np.ndarray, np.ndarray, np.ndarray],
    boundary: float,
    floor: float,
    positive_sd: PositiveWidth,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """EM on a weighted histogram; the last component is the positive one. Returns means,
    widths, weights, iterations and whether the log-likelihood settled."""
    mu, sd, weight = (a.astype(np.float64).copy() for a in start)
    n = w.sum()
    last, it, converged = -np.inf, 0, False
    for it in range(1, max_iter + 1):
        z = (x[:, None] - mu) / sd
        dens = weight * np.exp(-0.5 * z * z) / (sd * np.sqrt(2 * np.pi))
        total = np.maximum(dens.sum(axis=1, keepdims=True), 1e-300)
        loglik = float((w * np.log(total[:, 0])).sum())
        resp = dens / total * w[:, None]
        mass = np.maximum(resp.sum(axis=0), 1e-12)
        weight = mass / n
        mu = (resp * x[:, None]).sum(axis=0) / mass
        sd = np.maximum(np.sqrt((resp * (x[:, None] - mu) ** 2).sum(axis=0) / mass), floor)
        if positive_sd == "widest":
            sd[-1] = max(sd[-1], sd[:-1].max())
        mu[:-1] = np.minimum(mu[:-1], boundary)
        mu[-1] = max(mu[-1], boundary)
        if abs(loglik - last) <= tol * abs(loglik):
            converged = True
            break
        last = loglik
    return mu, sd, weight, it, converged


def _mixture(
    mu: np.ndarray, sd: np.ndarray, weight: np.ndarray, boundary: float, rows: int, it: int, converged: bool
) -> ScoreMixture:
    null_w = weight[:-1] / max(weight[:-1].sum(), 1e-12)
    return ScoreMixture(
        base_rate=float(weight[-1]),
        positive=(float(mu[-1]), float(sd[-1])),
        null_means=tuple(float(v) for v in mu[:-1]),
        null_sds=tuple(float(v) for v in sd[:-1]),
        null_weights=tuple(float(v) for v in null_w),
        boundary=float(boundary),
        rows=int(rows),
        iterations=it,
        converged=converged,
    )


def _finite(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) < 10 or np.ptp(s) == 0:
        raise EclipError(
            f"a base rate needs at least 10 distinct scores; got {len(s)} rows{' all equal' if len(s) and np.ptp(s) == 0 else ''}."
        )
    return s


def fit_score_mixture(
    scores: np.ndarray,
    boundary: float = 0.0,
    null_components: int = NULL_COMPONENTS,
    bins: int = BINS,
    max_iter: int = 2000,
    tol: float = 1e-8,
    positive_sd: PositiveWidth = "free",
) -> ScoreMixture:
    """Fit :class:`ScoreMixture` to a catalog's scores by EM on their histogram.

    Args:
        scores: ``(n,)`` float scores, higher = more likely positive (NaNs are ignored).
        boundary: the positive component's mean is held at or above it, the null means at or
            below it.
        null_components: Gaussians in the null.
        bins: histogram bins EM runs on.
        positive_sd: ``free``: the positive component takes its own width (the estimate);
            ``widest``: at least the widest null component's, as in a mixture with a common
            variance (McLachlan and Peel 2000, section 3.8), so that positives may reach as far
            below their mean as ordinary rows spread: the upper model of
            :func:`base_rate_interval`.

    Returns:
        The fitted mixture; ``base_rate`` near 0 when nothing in the scores looks positive.

    Raises:
        EclipError: fewer than 10 finite scores, or all of them equal.
    """
    s = _finite(scores)
    x, w, floor = _histogram(s, bins)
    mu, sd, weight, it, converged = _em(
        x, w, _start(s, boundary, null_components, floor), boundary, floor, positive_sd, max_iter, tol
    )
    return _mixture(mu, sd, weight, boundary, len(s), it, converged)


@dataclass(frozen=True)
class ExpectedOperatingPoint:
    """A label-free threshold and what the mixture expects of it.

    Attributes:
        threshold: flag scores at or above it (``inf`` when no threshold reaches the target).
        expected_precision: mean posterior of the flagged rows (1.0 when none is flagged).
        expected_recall: their posterior mass over the catalog's (0.0 when none is flagged).
        flagged: rows at or above the threshold.
        met_target: whether ``expected_precision`` reaches the target.
    """

    threshold: float
    expected_precision: float
    expected_recall: float
    flagged: int
    met_target: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (an unreachable threshold is ``None``). ``expected_recall`` is left
        out: the posterior mass it rests on counts only the positives the scores show, so it
        reads near 1 where labels measure 0.7; recall is reported as an interval instead
        (:func:`eclip.classify.intervals.flagged_interval`)."""
        return {
            "threshold": None if not np.isfinite(self.threshold) else round(self.threshold, 6),
            "expected_precision": round(self.expected_precision, 4),
            "flagged": self.flagged,
            "met_target": self.met_target,
        }


def threshold_for_expected_precision(
    scores: np.ndarray, posterior: np.ndarray, target: float, floor: float | None = None
) -> ExpectedOperatingPoint:
    """The lowest threshold whose flagged rows have a mean posterior of at least ``target``.

    Args:
        scores: ``(n,)`` float scores; posterior: ``(n,)`` float probability of each row
            being positive (:meth:`ScoreMixture.posterior`).
        target: expected precision to reach, in (0, 1].
        floor: never flag a score below it (e.g. the mixture's boundary).

    Returns:
        The operating point; ``threshold`` is ``inf`` (nothing flagged) when no threshold
        reaches the target, as on a catalog the mixture finds no positives in.
    """
    return _lowest_threshold(scores, posterior, target, floor=floor)


def adjust_to_base_rate(
    proba: np.ndarray, train_prior: float = 0.5, tol: float = 1e-7, max_iter: int = 1000
) -> tuple[float, np.ndarray]:
    """Estimate the base rate of unlabelled rows from a classifier's probabilities and move
    them to it: the EM prior adjustment of Saerens, Latinne and Decaestecker (Neural
    Computation 14(1), 2002, section 2.2).

    Args:
        proba: ``(n,)`` float probabilities of the positive class, calibrated at the prior
            ``train_prior`` the classifier was fitted under (0.5 for balanced class weights).
        train_prior: that prior, in (0, 1).

    Returns:
        ``(base_rate, posterior)``: the estimated share of positives, and ``(n,)`` float64
        probabilities at that share.

    Raises:
        EclipError: no rows, or ``train_prior`` outside (0, 1).
    """
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1 - 1e-12)
    if not len(p) or not 0.0 < train_prior < 1.0:
        raise EclipError(
            f"the prior adjustment needs rows and a training prior in (0, 1); got {len(p)} rows, {train_prior}."
        )
    pi, post = float(p.mean()), p
    for _ in range(max_iter):
        a, b = pi / train_prior * p, (1.0 - pi) / (1.0 - train_prior) * (1.0 - p)
        post = a / (a + b)
        new = float(post.mean())
        if abs(new - pi) < tol:
            pi = new
            break
        pi = new
    return pi, post


def threshold_for_blended_precision(
    scores: np.ndarray,
    posterior: np.ndarray,
    labelled_scores: np.ndarray,
    labelled_y: np.ndarray,
    target: float,
) -> ExpectedOperatingPoint:
    """The lowest threshold at which two estimates of precision, averaged, reach ``target``.

    With a few dozen labelled positives, the precision measured on the labelled rows is
    unbiased but noisy (the lowest threshold that reaches the target is the one noise favours
    most); the precision the catalog's posteriors expect is steady but rests on the model's
    calibration. Their mean, at each candidate threshold, kept precision at or above 0.9 in
    95 % of draws on netmeds with 20 labelled positives, where the labelled rows alone did so in
    90 % and, with 80 positives, in 50 % (``bench/adult.py``).

    Args:
        scores: ``(n,)`` float scores of the catalog's rows; posterior: ``(n,)`` their
            probability of being positive at the catalog's base rate
            (:func:`adjust_to_base_rate`).
        labelled_scores: ``(m,)`` float scores of labelled rows that did not fit the model
            (out-of-fold); labelled_y: ``(m,)`` bool.
        target: precision to reach, in (0, 1].

    Returns:
        The operating point: ``expected_precision`` is the averaged estimate at the threshold,
        ``expected_recall`` the posterior mass flagged; ``threshold`` is ``inf`` when no
        threshold reaches the target.
    """
    ls = np.asarray(labelled_scores, dtype=np.float64)
    ly = np.asarray(labelled_y, dtype=bool)
    lab_order = np.argsort(-ls, kind="stable")
    tp = np.cumsum(ly[lab_order])

    def labelled_precision(thresholds: np.ndarray) -> np.ndarray:
        above = np.searchsorted(-ls[lab_order], -thresholds, side="right")  # labelled rows scoring >= each
        return np.where(above > 0, tp[np.maximum(above - 1, 0)] / np.maximum(above, 1), 1.0)

    return _lowest_threshold(scores, posterior, target, also=labelled_precision)


def _lowest_threshold(
    scores: np.ndarray,
    posterior: np.ndarray,
    target: float,
    floor: float | None = None,
    also: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ExpectedOperatingPoint:
    """The lowest threshold whose precision estimate reaches ``target``: the flagged rows' mean
    posterior, or its mean with ``also(thresholds)`` (another estimate at each candidate
    threshold, scores in descending order); never below ``floor``; a threshold keeps all
    tied scores. ``inf`` (nothing flagged) when none reaches the target."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(posterior, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s_sorted, p_sorted = s[order], p[order]
    estimate = np.cumsum(p_sorted) / np.arange(1, len(s) + 1)
    if also is not None:
        estimate = (estimate + also(s_sorted)) / 2
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    ok = (estimate >= target) & last_of_tie
    if floor is not None:
        ok &= s_sorted >= floor
    if not ok.any():
        return ExpectedOperatingPoint(float("inf"), 1.0, 0.0, 0, False)
    i = int(np.flatnonzero(ok).max())
    total = float(p.sum())
    return ExpectedOperatingPoint(
        float(s_sorted[i]),
        float(estimate[i]),
        float(p_sorted[: i + 1].sum() / total) if total > 0 else 0.0,
        i + 1,
        True,
    )
