"""A match model taught by a reviewer: logistic regression over the pair signals.

The model maps a candidate pair's signals (the columns of ``pairs.parquet``) to a match
probability. It is fitted on a few hundred reviewed pairs (``eclip learn``) and then scores
every candidate pair (``eclip dedupe --match-model``).

* **Features** (:mod:`eclip.matcher.features`): every signal the run has, its levels and
  missing-value indicators, one indicator per kind of attribute conflict, and how far the
  pair's score is below the best score of each of its rows.
* **Classifier**: scikit-learn's ``LogisticRegression`` on standardised features.
* **Prior**: with few labels a classifier is erratic, so the run's own label-free match
  probabilities (:mod:`eclip.matcher.mixture`) enter the fit as soft pseudo-labels on a
  sample of candidate pairs, worth :data:`PRIOR_WEIGHT` labels in all. With no labels the
  model reproduces the unsupervised ranking; each label moves it further from it.
* **Probabilities**: the regression's own, anchored to the whole candidate population by the
  prior. Platt scaling on the random labels was tried and dropped: on Abt-Buy it cost 0.01
  to 0.02 F1 at 200 labels (issue 33). Cross-validation gives the precision and recall
  recorded with the model.
* **Never worse than no labels** (:mod:`eclip.matcher.label_check`): before the model
  replaces the label-free probability it is checked against it on held-out labels; the
  model file records whether it is used alone (``use = "learned"``), blended with the
  label-free probability (``"blended"``), or not at all (``"label-free"``).

The model is saved as JSON (feature names, standardisation, coefficients, labels, what
the check kept): no pickle, nothing executable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from eclip.matcher.constraints import Constraints
from eclip.matcher.features import (
    CODE_LEVELS,
    SIGNAL_FEATURES,
    MatchModelError,
    available_features,
    pair_features,
)
from eclip.matcher.grouping import group
from eclip.matcher.mixture import MatchSettings
from eclip.rundir import write_json

__all__ = ["CODE_LEVELS", "SIGNAL_FEATURES", "MatchModelError", "available_features", "pair_features"]

#: Weight, in labels, of the run's own (label-free) match probabilities in the fit.
PRIOR_WEIGHT = 20.0
#: Candidate pairs sampled to carry the prior.
PRIOR_SAMPLE = 2000
#: How a model file's probabilities are used (see :mod:`eclip.matcher.label_check`).
USES = ("learned", "blended", "label-free")
#: Version of the JSON format.
FORMAT = 1


@dataclass(frozen=True)
class CrossValidation:
    """Cross-validated quality of the model on its labels (at probability 0.5)."""

    folds: int
    precision: float
    recall: float
    f1: float


@dataclass
class MatchModel:
    """A fitted match model (see the module docstring).

    Attributes:
        features: feature names, in coefficient order.
        mean, scale: standardisation of each feature.
        coef, intercept: logistic regression on standardised features.
        platt_a, platt_b: probability = sigmoid(platt_a * decision + platt_b) (1 and 0
            unless a calibration is fitted).
        calibration: how ``platt_a, platt_b`` were chosen.
        labels: the labelled pairs it was fitted on: ``{"id_a", "id_b", "decision"}`` rows.
        cv: cross-validated precision / recall on the labels.
        use: one of :data:`USES`: the model alone, blended with the label-free probability,
            or not at all (the held-out check found it no better than no labels).
        blend: weight of the model's log-odds in a blend (the label-free one gets the rest).
        check: the held-out check's figures (:class:`eclip.matcher.label_check.LabelCheck`).
        info: what else is recorded (catalog, run, counts, versions).
    """

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    platt_a: float = 1.0
    platt_b: float = 0.0
    calibration: str = "none"
    labels: list[dict[str, str]] = field(default_factory=list)
    cv: CrossValidation | None = None
    use: str = "learned"
    blend: float = 1.0
    check: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def decision(self, x: np.ndarray) -> np.ndarray:
        """``(p,)`` float64 logistic-regression decision values of ``(p, f)`` features."""
        z = (np.asarray(x, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return z @ np.asarray(self.coef) + self.intercept

    def probability(self, x: np.ndarray) -> np.ndarray:
        """``(p,)`` float32 calibrated match probability of ``(p, f)`` features."""
        d = self.platt_a * self.decision(x) + self.platt_b
        return (1.0 / (1.0 + np.exp(-np.clip(d, -500, 500)))).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON, atomically."""
        return write_json({"format": FORMAT, "kind": "eclip match model", **asdict(self)}, path)

    @property
    def digest(self) -> str:
        """sha256 (16 hex) of the fitted parameters and labels: the model's identity."""
        body = json.dumps({k: v for k, v in asdict(self).items() if k != "info"}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def load_match_model(path: str | Path) -> MatchModel:
    """Read a model written by :meth:`MatchModel.save`.

    Raises:
        MatchModelError: missing file, not JSON, or not a match model of this format.
    """
    p = Path(path)
    if not p.is_file():
        raise MatchModelError(f"{p}: no such match model file (eclip learn writes one).")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MatchModelError(f"{p}: not a JSON match model ({exc}).") from None
    if not isinstance(raw, dict) or raw.get("kind") != "eclip match model":
        raise MatchModelError(f"{p}: not an eclip match model (eclip learn writes one).")
    if raw.get("format") != FORMAT:
        raise MatchModelError(
            f"{p}: match model format {raw.get('format')!r}; this eclip reads format {FORMAT}. Run eclip learn again."
        )
    try:
        cv = raw.get("cv")
        model = MatchModel(
            features=list(raw["features"]),
            mean=list(raw["mean"]),
            scale=list(raw["scale"]),
            coef=list(raw["coef"]),
            intercept=float(raw["intercept"]),
            platt_a=float(raw["platt_a"]),
            platt_b=float(raw["platt_b"]),
            calibration=str(raw.get("calibration", "none")),
            labels=list(raw.get("labels", [])),
            cv=CrossValidation(**cv) if cv else None,
            use=str(raw.get("use", "learned")),
            blend=float(raw.get("blend", 1.0)),
            check=dict(raw.get("check", {})),
            info=dict(raw.get("info", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MatchModelError(f"{p}: malformed match model ({exc}).") from None
    if not (len(model.features) == len(model.mean) == len(model.scale) == len(model.coef)):
        raise MatchModelError(f"{p}: malformed match model (features and coefficients differ in length).")
    if model.use not in USES:
        raise MatchModelError(f"{p}: malformed match model (use {model.use!r}, not one of {', '.join(USES)}).")
    return model


def _prior(prior: np.ndarray | None, x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, targets and weights that carry the label-free probabilities into the fit."""
    if prior is None or PRIOR_WEIGHT <= 0:
        return np.zeros((0, x.shape[1])), np.zeros(0), np.zeros(0)
    p = np.nan_to_num(np.asarray(prior, np.float64), nan=0.0)
    idx = np.random.default_rng(seed).choice(len(x), min(PRIOR_SAMPLE, len(x)), replace=False)
    w = PRIOR_WEIGHT / max(len(idx), 1)
    return (
        np.vstack([x[idx], x[idx]]),
        np.concatenate([np.ones(len(idx)), np.zeros(len(idx))]),
        np.concatenate([w * p[idx], w * (1.0 - p[idx])]),
    )


def fit_match_model(
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    population: np.ndarray,
    prior: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
) -> MatchModel:
    """Fit the match model on labelled pairs.

    Args:
        x: ``(m, f)`` float64 features of the labelled pairs (:func:`pair_features`).
        y: ``(m,)`` int 1 = same product, 0 = different.
        names: the ``f`` feature names.
        population: ``(p, f)`` features of every candidate pair of the run: they fix the
            standardisation and carry the prior.
        prior: ``(p,)`` the run's label-free match probabilities, or ``None`` for none.
        folds: cross-validation folds for the recorded precision / recall (fewer when a
            class has fewer labels; none below 2 per class).

    Returns:
        The model (``labels``, ``use`` and ``info`` left for the caller to fill).

    Raises:
        MatchModelError: the labels hold one class only.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise MatchModelError("the labels hold only one class: label at least one same and one different pair.")
    fit, mean, scale = regression(x, y, population, prior, seed)
    clf = fit(np.arange(len(y)))
    model = MatchModel(list(names), mean.tolist(), scale.tolist(), clf.coef_.ravel().tolist(), float(clf.intercept_[0]))
    model.calibration = "none: the regression's own probabilities, anchored by the label-free prior"
    k = int(min(folds, np.bincount(y).min()))
    if k < 2:
        return model
    held = np.empty(len(y), dtype=np.float64)
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
        held[test] = fit(train).decision_function((x[test] - mean) / scale)
    pred = held >= 0
    tp = int((pred & (y == 1)).sum())
    precision = tp / max(int(pred.sum()), 1)
    recall = tp / max(int((y == 1).sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    model.cv = CrossValidation(k, round(precision, 4), round(recall, 4), round(f1, 4))
    return model


def regression(
    x: np.ndarray, y: np.ndarray, population: np.ndarray, prior: np.ndarray | None, seed: int = 0
) -> tuple[Any, np.ndarray, np.ndarray]:
    """The match model's fit, for any subset of the labels.

    Returns:
        ``(fit, mean, scale)``: ``fit(rows)`` is scikit-learn's ``LogisticRegression`` fitted
        on the standardised features of labels ``rows`` and the prior's pseudo-labels;
        ``mean, scale`` ``(f,)`` the standardisation, from the candidate population.
    """
    from sklearn.linear_model import LogisticRegression

    mean = population.mean(axis=0) if len(population) else x.mean(axis=0)
    scale = population.std(axis=0) if len(population) else x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    px, py, pw = _prior(prior, population, seed)

    def fit(rows: np.ndarray) -> Any:
        xs = np.vstack([x[rows], px])
        ys = np.concatenate([y[rows], py])
        ws = np.concatenate([np.ones(len(rows)), pw])
        return LogisticRegression(C=1.0, max_iter=2000).fit((xs - mean) / scale, ys, sample_weight=ws)

    return fit, mean, scale


#: Probability thresholds :func:`expected_f1_threshold` tries.
THRESHOLD_GRID = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def expected_f1_threshold(
    probability: np.ndarray, labels_at: Any, grid: tuple[float, ...] = THRESHOLD_GRID
) -> tuple[float, dict[str, dict[str, float]]]:
    """The grouping threshold that maximises the pairwise F1 expected under the model.

    With calibrated match probabilities ``p`` over the candidate pairs, the expected number
    of true pairs is ``sum(p)``, and a grouping that puts ``m`` row pairs together, ``C`` of
    them candidates, expects ``sum(p[C])`` true positives: expected F1 = 2 sum(p[C]) / (m +
    sum(p)) (the plug-in F-measure rule, Ye, Chai, Lee and Chieu, "Optimizing F-measures: a
    tale of two approaches", ICML 2012). No labels are needed, so the threshold follows each
    catalog.

    Args:
        probability: ``(p,)`` match probabilities of the candidate pairs.
        labels_at: ``threshold -> ((n,) group labels, (p,) bool pairs inside a group)``,
            the grouping at that threshold.
        grid: thresholds tried.

    Returns:
        ``(best threshold, {threshold: {"precision", "recall", "f1"}})``: the expected pairwise
        precision ``sum(p[C]) / m``, recall ``sum(p[C]) / sum(p)`` and F1 at each threshold.
    """
    p = np.nan_to_num(np.asarray(probability, np.float64))
    total = float(p.sum())
    curve: dict[str, dict[str, float]] = {}
    best_t, best_f = grid[0], -1.0
    for t in grid:
        labels, inside = labels_at(t)
        _, counts = np.unique(labels, return_counts=True)
        implied = float((counts * (counts - 1) // 2).sum())
        hit = float(p[inside].sum())
        f = 2.0 * hit / (implied + total) if implied + total > 0 else 0.0
        curve[f"{t:g}"] = {
            "precision": round(hit / implied, 4) if implied else 1.0,
            "recall": round(hit / total, 4) if total else 0.0,
            "f1": round(f, 4),
        }
        if f > best_f + 1e-9:
            best_t, best_f = t, f
    return best_t, curve


def model_constraints(model: MatchModel, ids: list[str]) -> tuple[Constraints, int]:
    """The model's labelled pairs as constraints on a catalog: ``same`` must-link,
    ``different`` cannot-link.

    Returns:
        ``(constraints, pairs skipped because an id is not in ids)``.
    """
    pos = {x: i for i, x in enumerate(ids)}
    must: list[tuple[int, int]] = []
    cannot: list[tuple[int, int]] = []
    skipped = 0
    for rec in model.labels:
        x, y = pos.get(rec["id_a"]), pos.get(rec["id_b"])
        if x is None or y is None:
            skipped += 1
            continue
        (must if rec["decision"] == "same" else cannot).append((x, y))

    def arr(pairs: list[tuple[int, int]], k: int) -> np.ndarray:
        return np.array([p[k] for p in pairs], dtype=np.int64)

    return Constraints(arr(must, 0), arr(must, 1), arr(cannot, 0), arr(cannot, 1)), skipped


def blended(learned: np.ndarray, label_free: np.ndarray, weight: float) -> np.ndarray:
    """``(p,)`` float32 blend of two match probabilities on the log-odds scale:
    ``sigmoid(weight * logit(learned) + (1 - weight) * logit(label_free))`` (a logarithmic
    opinion pool, Genest and Zidek, Statistical Science 1986)."""

    def logit(q: np.ndarray) -> np.ndarray:
        q = np.clip(np.nan_to_num(np.asarray(q, np.float64), nan=0.5), 1e-6, 1 - 1e-6)
        return np.log(q / (1 - q))

    z = weight * logit(learned) + (1.0 - weight) * logit(label_free)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def settings_from_model(
    model: MatchModel,
    source: str,
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    columns: Mapping[str, np.ndarray],
    method: str,
    threshold: float | None,
    constraints: Constraints | None,
    label_free: Callable[[], MatchSettings] | None = None,
) -> MatchSettings:
    """Grouping settings when a match model scores the candidate pairs.

    Args:
        model: the match model; source: where it came from (its file), for messages.
        n, a, b: rows and ``(p,)`` candidate pairs. columns: the pairs' signals and score.
        method: the grouping method (``auto`` resolved by the caller: a catalog of pairs or
            of groups is a property of the catalog, better read from all its candidate
            scores than from a model fitted on a few labels, which can flip it).
        threshold: a probability threshold, or ``None`` to pick the one that maximises the
            expected pairwise F1 (:func:`expected_f1_threshold`).
        constraints: constraints applied while grouping (for the threshold search).
        label_free: the run's label-free settings, made on demand: what a model whose
            ``use`` is ``label-free`` gives way to, and the other half of a blend.

    Returns:
        Settings on ``match_probability``: the model's probabilities (or the blend, or the
        label-free settings themselves), the method, the threshold and what was learned.

    Raises:
        MatchModelError: the model needs signals these pairs do not have; it is blended or
            label-free and no ``label_free`` settings were given.
    """
    learned: dict[str, Any] = {
        "match_model": {
            "file": str(source),
            "digest": model.digest,
            "features": model.features,
            "labels": len(model.labels),
            "cross_validated": asdict(model.cv) if model.cv else None,
            "use": model.use,
            "check": model.check or None,
        }
    }
    if model.use != "learned" and label_free is None:
        raise MatchModelError(f"{source} is {model.use}: it needs the run's label-free probabilities.")
    if model.use == "label-free":
        free = label_free()  # type: ignore[misc]
        return dataclasses.replace(free, learned={**free.learned, **learned})
    try:
        x, _ = pair_features(columns, a, b, n, model.features)
    except MatchModelError as exc:
        have = [k for k in columns if k in SIGNAL_FEATURES or k in ("price_ratio", "score")]
        raise MatchModelError(
            f"{source} was fitted on other signals than this run has ({exc}; this run has {', '.join(have)}). "
            "Run dedupe with the signals of the run the model learned on (same --signals, --lexical, --image-col), or run eclip learn on this run."
        ) from None
    prob = model.probability(x)
    if model.use == "blended":
        prob = blended(prob, label_free().probability, model.blend)  # type: ignore[misc]
    if method not in ("mutual", "average", "components"):
        raise ValueError(f"settings_from_model needs a resolved grouping method, not {method!r}")
    if threshold is not None:
        return MatchSettings(
            method,
            float(threshold),
            "match_probability",
            prob,
            {**learned, "threshold_from": "given (on the match model's probability)"},
        )

    def labels_at(t: float) -> tuple[np.ndarray, np.ndarray]:
        g = group(n, a, b, prob, t, method, constraints)
        return g.labels, g.labels[a] == g.labels[b]

    t, curve = expected_f1_threshold(prob, labels_at)
    learned["expected_by_threshold"] = curve
    learned["expected_at_threshold"] = curve[f"{t:g}"]
    return MatchSettings(
        method,
        t,
        "match_probability",
        prob,
        {
            **learned,
            "threshold_from": "learned: the match model's probability threshold with the highest expected pairwise F1",
        },
    )
