"""Labels that never hurt: before a match model taught by a reviewer replaces the label-free
match probability, it is checked against it on labels it was not fitted on.

Three ways to score the candidate pairs compete:

* ``learned``: the match model's probability (:mod:`eclip.matcher.model`);
* ``blended``: its log-odds averaged with the label-free probability's
  (:func:`eclip.matcher.model.blended`, weight :data:`BLEND_WEIGHT`);
* ``label-free``: the run's own settings, as if there were no model (the labels still act
  as constraints).

**Held-out decisions.** The labelled candidate pairs are split in stratified folds. In each
fold the model is refitted on the other folds, scores every candidate pair, and the catalog
is grouped the way ``eclip dedupe --match-model`` would group it (the other folds' labels as
constraints, the threshold the full model's expected F1 chose); a held-out pair is predicted
a match when both rows end in one group. The label-free option groups with the run's own
method and threshold and the same constraints. So each option is judged on what it would
do to pairs it has not seen, grouping included.

**Weighted back to the candidate population.** Labels chosen by uncertainty crowd near the
decision boundary; each is weighted by the candidate pairs it stands for
(:func:`eclip.matcher.labels.poststratified_weights`, trimmed at 3.5 times their median), and
pairwise precision, recall and F1 are estimated with those weights (Horvitz-Thompson
estimates of the counts behind them). Untrimmed, a handful of labels in the crowded
low-probability stratum decided every estimate: on ProMap CZ the check then kept models that
lost up to 0.09 F1 on the unlabelled rows.

**Choice.** The label-free probability is kept unless the held-out labels clearly say
otherwise: the learned model or the blend replaces it only when its F1 is higher by more
than one standard error of the difference (a paired bootstrap over the labels; the
one-standard-error rule of Breiman et al., *Classification and Regression Trees*, 1984, and
Hastie, Tibshirani and Friedman, *The Elements of Statistical Learning*, section 7.10), and
of the two the one ahead by more. A few dozen labels move nothing they cannot support: on
ProMap CZ at 25-100 labels both the learned model and the blend did worse than no labels on
the unlabelled rows while their point estimates were higher; over 64 recorded label
sequences of Abt-Buy and ProMap CZ this rule never lost more than 0.001 F1 against no
labels, and kept 0.020 of the 0.026 an oracle choice gains on Abt-Buy (issue 33).
The choice is recorded in the model file (``use``, ``check``) and printed by ``eclip
learn``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from eclip.matcher.constraints import Constraints
from eclip.matcher.grouping import group
from eclip.matcher.labels import poststratified_weights
from eclip.matcher.model import MatchModel, blended, expected_f1_threshold, fit_match_model, regression

#: Weight of the learned log-odds in the blend.
BLEND_WEIGHT = 0.5
#: Folds of the held-out check (fewer when a class has fewer labels).
FOLDS = 5
#: What is kept unless the held-out labels clearly say otherwise.
DEFAULT = "label-free"
#: Bootstrap resamples of the held-out labels for the standard error of an F1 difference.
BOOTSTRAP = 200


@dataclass
class LabelCheck:
    """What the held-out check found.

    Attributes:
        use: the option kept: ``learned``, ``blended`` or ``label-free``.
        reason: why, in a sentence.
        folds: cross-validation folds (0: no check was possible).
        labels: labelled candidate pairs the check used.
        estimates: per option, the held-out pairwise ``precision``, ``recall`` and ``f1``
            estimated for the candidate population, and (learned and blended)
            ``se_vs_label_free``: the bootstrap standard error of its F1 minus the
            label-free one's.
        thresholds: per option, the probability threshold it groups at.
        expected: per option, the model's own expected precision, recall and F1 at that
            threshold, over every candidate pair (no labels needed).
        curves: per option, the same at every threshold tried
            (:func:`eclip.matcher.model.expected_f1_threshold`).
    """

    use: str
    reason: str
    folds: int
    labels: int
    estimates: dict[str, dict[str, float]] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    expected: dict[str, dict[str, float]] = field(default_factory=dict)
    curves: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The check as JSON-ready values."""
        return asdict(self)


def weighted_prf(predicted: np.ndarray, truth: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    """Pairwise precision, recall and F1 of ``(m,)`` bool predictions against ``(m,)`` truth,
    each pair counted ``weight`` times (``(m,)`` float64 >= 0)."""
    p, t, w = np.asarray(predicted, bool), np.asarray(truth, bool), np.asarray(weight, np.float64)
    tp, fp, fn = float(w[p & t].sum()), float(w[p & ~t].sum()), float(w[~p & t].sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def _constraints(
    a: np.ndarray, b: np.ndarray, pairs: np.ndarray, y: np.ndarray, extra: Constraints | None
) -> Constraints:
    c = Constraints.from_answers(a[pairs], b[pairs], np.asarray(y, bool))
    return c if extra is None else c + extra


def check_labels(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    x: np.ndarray,
    names: list[str],
    prior: np.ndarray,
    labelled: np.ndarray,
    y: np.ndarray,
    method: str,
    label_free: tuple[np.ndarray, float],
    extra: Constraints | None = None,
    seed: int = 0,
) -> MatchModel:
    """Fit the match model on the labels and check it against the label-free probability.

    Args:
        n: rows of the catalog; a, b: ``(p,)`` int64 candidate pairs (row positions).
        x: ``(p, f)`` float64 features of every candidate pair; names: their ``f`` names.
        prior: ``(p,)`` float32 the run's label-free match probability.
        labelled: ``(m,)`` int64 indices of the labelled pairs among the candidates.
        y: ``(m,)`` int 1 = same product, 0 = different.
        method: the run's grouping method (``mutual``, ``average`` or ``components``).
        label_free: ``((p,) values, threshold)`` the run's label-free grouping: the match
            probability or the score it grouped on, and its threshold.
        extra: constraints every grouping obeys besides the labels (labelled pairs that are
            not candidates).

    Returns:
        The model fitted on every label, its ``use``, ``blend`` and ``check`` filled.

    Raises:
        MatchModelError: the labels hold one class only.
    """
    y = np.asarray(y, np.int64)
    labelled = np.asarray(labelled, np.int64)
    model = fit_match_model(x[labelled], y, names, x, prior, seed=seed)
    options: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "learned": lambda p: p,
        "blended": lambda p: blended(p, prior, BLEND_WEIGHT),
    }
    full = _constraints(a, b, labelled, y, extra)
    p_full = model.probability(x)
    check = LabelCheck("label-free", "", 0, len(y))
    for name, f in options.items():
        q = f(p_full)

        def labels_at(t: float, q: np.ndarray = q) -> tuple[np.ndarray, np.ndarray]:
            g = group(n, a, b, q, t, method, full)
            return g.labels, g.labels[a] == g.labels[b]

        t, curve = expected_f1_threshold(q, labels_at)
        check.thresholds[name], check.expected[name], check.curves[name] = t, curve[f"{t:g}"], curve
    k = int(min(FOLDS, np.bincount(y, minlength=2).min()))
    if k < 2:
        check.reason = "fewer than 2 labels of a class: the learned model cannot be checked, so it is not used"
        return _keep(model, check)
    from sklearn.model_selection import StratifiedKFold

    fit, mean, scale = regression(x[labelled], y, x, prior, seed)
    z = (x - mean) / scale
    held = {name: np.zeros(len(y), bool) for name in ("label-free", *options)}
    free_on, free_t = label_free
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(labelled, y):
        p_fold = fit(train).predict_proba(z)[:, 1].astype(np.float32)
        cons = _constraints(a, b, labelled[train], y[train], extra)
        ha, hb = a[labelled[test]], b[labelled[test]]
        for name, f in options.items():
            g = group(n, a, b, f(p_fold), check.thresholds[name], method, cons)
            held[name][test] = g.labels[ha] == g.labels[hb]
        g = group(n, a, b, free_on, free_t, method, cons)
        held["label-free"][test] = g.labels[ha] == g.labels[hb]
    check.folds = k
    check.use, check.estimates = choose_use(held, y == 1, poststratified_weights(prior, labelled), seed)
    f1 = {o: check.estimates[o]["f1"] for o in check.estimates}
    check.reason = {
        "label-free": f"neither the learned model ({f1['learned']:.3f}) nor the blend ({f1['blended']:.3f}) beats "
        f"the label-free probability's held-out F1 {f1['label-free']:.3f} by more than a standard error",
        "learned": f"its held-out F1 {f1['learned']:.3f} beats the label-free {f1['label-free']:.3f} by more than a "
        f"standard error (blend {f1['blended']:.3f})",
        "blended": f"its held-out F1 {f1['blended']:.3f} beats the label-free {f1['label-free']:.3f} by more than a "
        f"standard error (learned {f1['learned']:.3f})",
    }[check.use]
    return _keep(model, check)


def choose_use(
    held: dict[str, np.ndarray], truth: np.ndarray, weight: np.ndarray, seed: int = 0
) -> tuple[str, dict[str, dict[str, float]]]:
    """The option to keep, from held-out decisions (see the module docstring's "Choice").

    Args:
        held: ``{"learned", "blended", "label-free"} -> (m,) bool`` held-out decisions.
        truth: ``(m,)`` bool the labels. weight: ``(m,)`` float64 each label's weight.

    Returns:
        ``(option kept, {option: {"precision", "recall", "f1"[, "se_vs_label_free"]}})``.
    """
    estimates = {name: weighted_prf(d, truth, weight) for name, d in held.items()}
    boot = np.random.default_rng(seed).integers(0, len(truth), size=(BOOTSTRAP, len(truth)))
    f1_boot = {name: _bootstrap_f1(d, truth, weight, boot) for name, d in held.items()}
    gain = {}
    for name in ("blended", "learned"):
        se = float(np.std(f1_boot[name] - f1_boot[DEFAULT]))
        estimates[name]["se_vs_label_free"] = round(se, 4)
        gain[name] = estimates[name]["f1"] - estimates[DEFAULT]["f1"] - se
    best = max(gain, key=lambda o: gain[o])
    return (best if gain[best] > 0 else DEFAULT), estimates


def _bootstrap_f1(predicted: np.ndarray, truth: np.ndarray, weight: np.ndarray, boot: np.ndarray) -> np.ndarray:
    """``(B,)`` weighted F1 of each bootstrap resample (``boot``: ``(B, m)`` label indices)."""
    tp = (weight * (predicted & truth))[boot].sum(axis=1)
    wrong = (weight * (predicted != truth))[boot].sum(axis=1)
    return np.where(tp > 0, 2 * tp / np.maximum(2 * tp + wrong, 1e-12), 0.0)


def _keep(model: MatchModel, check: LabelCheck) -> MatchModel:
    model.use = check.use
    model.blend = BLEND_WEIGHT if check.use == "blended" else 1.0
    model.check = check.as_dict()
    return model
