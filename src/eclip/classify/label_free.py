"""The adult filter without labels: the catalog's base-rate mixture on its zero-shot margins,
every row's posterior, the second pass (:mod:`eclip.classify.second_pass`), the base rate's
interval, the label-free operating point, and what the flags are expected to hold
(:mod:`eclip.classify.intervals`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eclip.classify.adult import BOUNDARY as ADULT_BOUNDARY
from eclip.classify.base_rate import (
    ExpectedOperatingPoint,
    ScoreMixture,
    fit_score_mixture,
    threshold_for_expected_precision,
)
from eclip.classify.intervals import BaseRateInterval, base_rate_interval, flagged_interval, lift_odds
from eclip.classify.second_pass import SecondPass, catalog_evidence
from eclip.progress import console

#: Fewest scored rows a base rate is estimated from; below it the label-free threshold is the
#: boundary itself (flag the rows whose nearest concept is adult).
MIN_ROWS_FOR_BASE_RATE = 50


@dataclass
class LabelFree:
    """What the catalog's own margins say, without labels.

    Attributes:
        mixture: the base-rate mixture (``None`` below :data:`MIN_ROWS_FOR_BASE_RATE` rows).
        posterior: ``(n,)`` float64 zero-shot posterior of every row (0 without a vector).
        second: the second pass's evidence, or ``None`` when it did not run.
        lifted: ``(n,)`` float64 posterior after the second pass (= ``posterior`` without it).
        point: the label-free operating point on ``lifted`` (on the margin without a mixture).
        interval: the base rate's interval, or ``None`` without a mixture.
    """

    mixture: ScoreMixture | None
    posterior: np.ndarray
    second: SecondPass | None
    lifted: np.ndarray
    point: ExpectedOperatingPoint
    interval: BaseRateInterval | None

    @property
    def on(self) -> str:
        """What the label-free threshold applies to."""
        if self.mixture is None:
            return "zero-shot margin"
        return "posterior after the second pass" if self.second is not None else "zero-shot posterior"

    def ratio(self, rows: np.ndarray) -> np.ndarray | None:
        """``rows``' second-pass odds factors, or ``None`` without a second pass."""
        return None if self.second is None else self.second.ratio[rows]


def label_free(
    margin: np.ndarray, present: np.ndarray, x: np.ndarray, target: float, seed: int = 0, second: bool = True
) -> LabelFree:
    """The catalog's base-rate mixture on its margins, every row's posterior, the second pass
    (:mod:`eclip.classify.second_pass`) on the rows with vectors, the base rate's interval
    and the label-free operating point for ``target`` on the posterior after the second pass;
    with fewer than :data:`MIN_ROWS_FOR_BASE_RATE` scored rows, no mixture, posteriors of 1
    above the boundary, and the boundary on the margin as threshold.

    Args:
        margin: ``(n,)`` float32 zero-shot margins; present: ``(n,)`` bool rows with vectors;
        x: ``(present.sum(), d)`` float32 L2-normalised vectors of the rows with vectors, in
            row order (no copy of the whole catalog's is made here); target: expected
            precision to reach.
        seed: random seed of the second pass and the bootstrap.
        second: run the second pass and the interval (a probe's run uses neither).
    """
    n = len(margin)
    if present.sum() < MIN_ROWS_FOR_BASE_RATE:
        console.print(
            f"[yellow]{int(present.sum())} scored rows are too few to estimate a base rate from; flagging rows whose nearest concept is adult.[/]"
        )
        posterior = (present & (margin >= ADULT_BOUNDARY)).astype(np.float64)
        point = ExpectedOperatingPoint(ADULT_BOUNDARY, 1.0, 1.0, int(posterior.sum()), True)
        return LabelFree(None, posterior, None, posterior, point, None)
    rows = np.flatnonzero(present)
    mixture = fit_score_mixture(margin[rows], boundary=ADULT_BOUNDARY)
    posterior = np.zeros(n)
    posterior[rows] = mixture.posterior(margin[rows])
    evidence = catalog_evidence(x, posterior[rows], seed=seed) if second else None
    lifted = posterior.copy()
    if evidence is not None:
        lifted[rows] = lift_odds(posterior[rows], evidence.ratio)
        full = np.ones(n)
        full[rows] = evidence.ratio
        evidence.ratio = full  # indexed by row, like the rest
        for name in ("neighbours", "probe"):
            v = np.full(n, np.nan, dtype=np.float32)
            v[rows] = getattr(evidence, name)
            setattr(evidence, name, v)
    point = threshold_for_expected_precision(lifted[rows], lifted[rows], target)
    interval = base_rate_interval(margin[rows], boundary=ADULT_BOUNDARY, seed=seed) if second else None
    return LabelFree(mixture, posterior, evidence, lifted, point, interval)


def promises(
    lf: LabelFree, margin: np.ndarray, present: np.ndarray, flagged: np.ndarray, probability: np.ndarray, probe: bool
) -> dict[str, Any]:
    """What the flags are expected to hold: the flagged rows' mean ``probability`` (their
    expected precision) and, for zero-shot scores with a base-rate mixture, the bounds over the
    base rate's doubt (:func:`eclip.classify.intervals.flagged_interval`): ``precision_at_least``
    (the interval's lower end: a one-sided bound at ``(1 + level) / 2``; the mixture is
    cautious at the top, so the upper end is no promise) and ``recall_interval``. Recall is
    never a single number: with a probe, or without a mixture, it is left out.

    Args:
        margin, present, flagged, probability: ``(n,)`` per row.
        probe: the flags come from a probe's scores (the mixture's posteriors do not apply).
    """
    at = flagged & present
    out: dict[str, Any] = {
        "expected_precision": round(float(probability[at].mean()), 4) if at.any() else None,
        "precision_at_least": None,
        "recall_interval": None,
        "interval_level": None,
    }
    if probe or lf.interval is None:
        out["recall_note"] = "not estimated: " + (
            "a probe's scores are not on the mixture's scale" if probe else "too few rows for a base rate"
        )
        return out
    rows = np.flatnonzero(at)
    found = float(lf.lifted[present].sum() - lf.posterior[present].sum())
    fi = flagged_interval(lf.interval, margin[rows], int(present.sum()), lf.ratio(rows), found_beyond=found)
    d = fi.as_dict()
    out.update(
        precision_at_least=d["precision"][0] if d["precision"] else None,
        recall_interval=d["recall"],
        adult_rows_interval=d["positives"],
        interval_level=fi.level,
    )
    return out
