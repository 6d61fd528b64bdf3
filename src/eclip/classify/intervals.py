"""How sure a label-free threshold's promises are: intervals on the base rate, and on the
precision and recall of the rows a threshold flags.

The base-rate mixture (:mod:`eclip.classify.base_rate`) gives one number per question; at a
0.2 % base rate it rests on a few dozen rows, and it counts only the positives whose scores
stand out. A recall computed from its posteriors alone then reads 0.99 where labels measure
0.69 (netmeds' adult rows among ordinary ones, ``bench/adult.py``). Here each number gets an
interval that covers both the sampling doubt (bootstrap) and the model's (a wider positive
component), and recall is given only as such an interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from eclip.classify.base_rate import (
    BINS,
    NULL_COMPONENTS,
    PositiveWidth,
    ScoreMixture,
    _em,
    _finite,
    _histogram,
    _mixture,
    _start,
)
from eclip.errors import EclipError
from eclip.progress import progress_bar


@dataclass(frozen=True)
class BaseRateInterval:
    """What a catalog's scores say about its positives, with their uncertainty.

    The point estimate is the mixture's (``positive_sd="free"``). The interval spans two
    sources of doubt: sampling (the rows are one draw: the mixture is refitted on ``draws``
    bootstrap resamples of the rows, Efron and Tibshirani, *An Introduction to the Bootstrap*,
    1993, chapter 13, percentile intervals) and the model (positives whose scores look
    ordinary are invisible to a narrow positive component: the upper end comes from the
    mixture whose positive component is at least as wide as the null's,
    ``positive_sd="widest"``).

    Attributes:
        estimate: the base rate, in [0, 1].
        low, high: the ``level`` interval's ends (``low`` from the free model's resamples,
            ``high`` the larger of both models' upper percentiles).
        level: the interval's nominal coverage (e.g. 0.9).
        draws: bootstrap resamples; seed: their random seed.
        free, widest: ``(draws,)`` float64 base rates of each model's resamples.
        resamples: the free model's fit to each resample (its :meth:`ScoreMixture.posterior`
            gives intervals on what a threshold flags: :func:`flagged_interval`).
    """

    estimate: float
    low: float
    high: float
    level: float
    draws: int
    seed: int
    free: np.ndarray
    widest: np.ndarray
    resamples: tuple[ScoreMixture, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the resamples left out)."""
        return {
            "estimate": round(self.estimate, 6),
            "low": math.floor(self.low * 1e6) / 1e6,
            "high": math.ceil(self.high * 1e6) / 1e6,
            "level": self.level,
            "draws": self.draws,
            "seed": self.seed,
            "upper_model": "positive component at least as wide as the null's",
        }


#: Bootstrap resamples of :func:`base_rate_interval`; EM restarts from the full fit, so each
#: takes tens of iterations.
INTERVAL_DRAWS = 100
#: Nominal coverage of the reported intervals.
INTERVAL_LEVEL = 0.9


def base_rate_interval(
    scores: np.ndarray,
    boundary: float = 0.0,
    level: float = INTERVAL_LEVEL,
    draws: int = INTERVAL_DRAWS,
    seed: int = 0,
    bins: int = BINS,
    max_iter: int = 300,
) -> BaseRateInterval:
    """The catalog's base rate with an interval over sampling and model uncertainty (see
    :class:`BaseRateInterval`).

    A bootstrap resample of the rows is a multinomial draw of the histogram's counts (EM only
    sees the histogram), so a resample costs one EM run on at most ``bins`` points, whatever
    the rows.

    Args:
        scores: ``(n,)`` float scores (NaNs ignored); boundary: as in :func:`fit_score_mixture`.
        level: nominal coverage in (0, 1); draws: resamples; seed: their random seed.

    Raises:
        EclipError: fewer than 10 finite scores, or all equal; ``level`` outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise EclipError(f"an interval's level must be in (0, 1); got {level}.")
    s = _finite(scores)
    x, w, floor = _histogram(s, bins)
    k = NULL_COMPONENTS
    models: tuple[PositiveWidth, ...] = ("free", "widest")
    fits = {m: _em(x, w, _start(s, boundary, k, floor), boundary, floor, m, 2000, 1e-8) for m in models}
    estimate = float(fits["free"][2][-1])
    rng = np.random.default_rng(seed)
    rates: dict[str, list[float]] = {"free": [], "widest": []}
    resamples = []
    with progress_bar(f"base-rate interval: {draws} bootstrap resamples x 2 mixtures", draws, "resamples") as (
        bar,
        task,
    ):
        for _ in range(draws):
            wb = rng.multinomial(int(w.sum()), w / w.sum()).astype(np.float64)
            for model in models:
                mu, sd, weight, _, _ = fits[model]
                mb, sb, wgt, it, ok = _em(x, wb, (mu, sd, weight), boundary, floor, model, max_iter, 1e-7)
                rates[model].append(float(wgt[-1]))
                if model == "free":
                    resamples.append(_mixture(mb, sb, wgt, boundary, len(s), it, ok))
            bar.advance(task)
    free, widest = np.array(rates["free"]), np.array(rates["widest"])
    tail = (1.0 - level) / 2
    return BaseRateInterval(
        estimate=estimate,
        low=float(min(np.quantile(free, tail), estimate)),
        high=float(max(np.quantile(free, 1 - tail), np.quantile(widest, 1 - tail), estimate)),
        level=level,
        draws=draws,
        seed=seed,
        free=free,
        widest=widest,
        resamples=tuple(resamples),
    )


def lift_odds(posterior: np.ndarray, odds_ratio: np.ndarray | None) -> np.ndarray:
    """``(n,)`` float64 posteriors whose odds are multiplied by ``odds_ratio`` (``(n,)``, e.g.
    the neighbour evidence of :mod:`eclip.classify.neighbours`); ``None`` leaves them as they are."""
    p = np.clip(np.asarray(posterior, dtype=np.float64), 0.0, 1.0)
    if odds_ratio is None:
        return p
    r = np.asarray(odds_ratio, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = np.where(p < 1.0, p / np.maximum(1.0 - p, 1e-300), np.inf) * r
        return np.where(np.isfinite(odds), odds / (1.0 + odds), 1.0)


@dataclass(frozen=True)
class FlaggedInterval:
    """Intervals on what a set of flagged rows holds (see :func:`flagged_interval`).

    Attributes:
        flagged: rows flagged.
        precision: ``(low, high)`` share of them that are positive (``None`` when none is flagged).
        recall: ``(low, high)`` share of the catalog's positives they hold (``None`` when the
            interval expects less than one positive in the catalog).
        positives: ``(low, high)`` positive rows in the catalog.
        level: nominal coverage of each interval.
    """

    flagged: int
    precision: tuple[float, float] | None
    recall: tuple[float, float] | None
    positives: tuple[float, float]
    level: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, rounded outwards."""

        def pair(v: tuple[float, float] | None, digits: int = 4) -> list[float] | None:
            # rounded outwards: a bound never claims more than was computed
            scale = 10.0**digits
            return None if v is None else [math.floor(v[0] * scale) / scale, math.ceil(v[1] * scale) / scale]

        return {
            "flagged": self.flagged,
            "precision": pair(self.precision),
            "recall": pair(self.recall),
            "positives": pair(self.positives, 1),
            "level": self.level,
        }


def flagged_interval(
    interval: BaseRateInterval,
    flagged_scores: np.ndarray,
    rows: int,
    odds_ratio: np.ndarray | None = None,
    found_beyond: float = 0.0,
) -> FlaggedInterval:
    """Precision and recall of flagged rows, each as an interval over the base rate's doubt.

    Each bootstrap resample's mixture (``interval.resamples``) gives the flagged rows'
    posteriors, and a draw of their outcomes from those posteriors the true positives among
    them, ``TP`` (so the interval holds the realised count, not only its expectation). The catalog's positives
    range over ``interval.low .. interval.high`` of its rows. Then precision lies in
    ``TP_low / F .. TP_high / F`` and recall in ``TP_low / positives_high ..
    TP_high / positives_low`` (at most 1), each ``TP`` end the resamples' percentile at the
    interval's level. Recall is never given as one number: its denominator is the base rate,
    the least sure thing the scores tell.

    Args:
        interval: from :func:`base_rate_interval` on the catalog's scores.
        flagged_scores: ``(f,)`` scores of the flagged rows, on the scale the mixture was fitted to.
        rows: the catalog's scored rows (``n``).
        odds_ratio: ``(f,)`` evidence beyond the scores multiplying each flagged row's
            posterior odds (:func:`lift_odds`), or ``None``.
        found_beyond: expected positives that evidence adds over the whole catalog (the sum of
            its lifted posteriors minus the mixture's), counted at both ends of ``positives``.

    Raises:
        EclipError: ``odds_ratio`` does not match ``flagged_scores``.
    """
    s = np.asarray(flagged_scores, dtype=np.float64)
    if odds_ratio is not None and len(odds_ratio) != len(s):
        raise EclipError(f"odds ratios ({len(odds_ratio)}) must match the flagged rows ({len(s)}).")
    tail = (1.0 - interval.level) / 2
    f = len(s)
    if f:
        rng = np.random.default_rng(interval.seed)
        # each resample's posteriors, then the flagged rows' outcomes drawn from them: the
        # realised count varies around its expectation even when the posteriors are right
        tp = np.array(
            [(rng.random(f) < lift_odds(m.posterior(s), odds_ratio)).sum() for m in interval.resamples],
            dtype=np.float64,
        )
        tp_low, tp_high = float(np.quantile(tp, tail)), float(np.quantile(tp, 1 - tail))
    else:
        tp_low = tp_high = 0.0
    pos_low = max(interval.low * rows + found_beyond, tp_low)
    pos_high = max(interval.high * rows + found_beyond, pos_low)
    recall = None
    if pos_high >= 1.0:
        recall = (min(1.0, tp_low / pos_high), min(1.0, tp_high / pos_low) if pos_low > 0 else 1.0)
    return FlaggedInterval(
        flagged=f,
        precision=(tp_low / f, tp_high / f) if f else None,
        recall=recall,
        positives=(pos_low, pos_high),
        level=interval.level,
    )
