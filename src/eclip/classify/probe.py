"""Linear probe: multinomial logistic regression on frozen embeddings (scikit-learn).

The linear-probe protocol of CLIP (Radford et al. 2021, section 3.2; appendix A.3): an
L2-regularised ``LogisticRegression`` (L-BFGS) fitted on the embeddings of labelled rows.
Cross-validated accuracy and macro-F1 come from ``cross_val_predict`` over stratified folds.

A saved probe is an ``.npz`` of plain arrays (coefficients, intercepts, class names, a JSON
header) read back with ``allow_pickle=False``: loading one never runs code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eclip.classify.zeroshot import softmax
from eclip.errors import EclipError, RunDirError
from eclip.rundir import atomic_path

PROBE_FORMAT = "eclip-linear-probe/1"


@dataclass
class LinearProbe:
    """A fitted probe.

    Attributes:
        classes: ``C`` class names.
        coef: ``(C, d)`` float32 weights; intercept: ``(C,)`` float32 (for 2 classes the
            binary model is stored as 2 rows, ``[-w, w]`` halves, so the softmax is exact).
        meta: model and vectors it was fitted on (``model``, ``vectors``, ``C``), and its
            cross-validated scores.
    """

    classes: list[str]
    coef: np.ndarray
    intercept: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, C)`` float32 log-probabilities of the ``(n, d)`` float32 rows."""
        from scipy.special import log_softmax

        return log_softmax(x @ self.coef.T + self.intercept, axis=1).astype(np.float32)

    def proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, C)`` float32 class probabilities (rows sum to 1)."""
        return softmax(x @ self.coef.T + self.intercept)

    def save(self, path: str | Path) -> Path:
        """Write the probe atomically as ``.npz`` (no pickles)."""
        return save_probe_file(
            path,
            PROBE_FORMAT,
            self.meta,
            coef=self.coef.astype(np.float32),
            intercept=self.intercept.astype(np.float32),
            classes=np.array(self.classes, dtype=str),
        )

    @classmethod
    def load(cls, path: str | Path) -> LinearProbe:
        """Read a probe written by :meth:`save`.

        Raises:
            RunDirError: the file is missing or is not an eclip probe.
        """
        arrays, meta = load_probe_file(
            path,
            PROBE_FORMAT,
            "fit one with `eclip classify CATALOG --train LABELLED --label-col COL`.",
            "not an eclip probe file",
        )
        try:
            return cls(
                classes=[str(c) for c in arrays["classes"]],
                coef=arrays["coef"],
                intercept=arrays["intercept"],
                meta=meta,
            )
        except KeyError as exc:
            raise RunDirError(f"{path}: not an eclip probe file (no {exc} array).") from None


def save_probe_file(path: str | Path, fmt: str, meta: dict[str, Any], **arrays: np.ndarray) -> Path:
    """Write ``arrays`` and a JSON header (``{"format": fmt, **meta}``) atomically as one
    ``.npz`` of plain arrays, readable with ``allow_pickle=False``."""
    named: dict[str, Any] = {"header": np.array(json.dumps({"format": fmt, **meta})), **arrays}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **named)
    return Path(path)


def load_probe_file(
    path: str | Path, fmt: str, how_to_fit: str, wrong_format: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_probe_file` without running code
    (``allow_pickle=False``).

    Returns:
        ``(arrays, meta)``: every array but the header, and the header without ``format``.

    Raises:
        RunDirError: the file is missing (naming ``how_to_fit``), is not such a file, or
            has another format (``wrong_format``, then the format found and ``fmt``).
    """
    p = Path(path)
    if not p.exists():
        raise RunDirError(f"{p}: no such probe file; {how_to_fit}")
    try:
        z = np.load(p, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("header")))
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{p}: not an eclip probe file ({exc}).") from None
    if meta.get("format") != fmt:
        raise RunDirError(
            f"{p}: {wrong_format} (format {meta.get('format')!r}, this eclip reads {fmt!r}); {how_to_fit}"
        )
    meta.pop("format", None)
    return arrays, meta


#: Inverse regularisation strengths tried when none is given (CLIP sweeps ``C`` on
#: validation data; on L2-normalised embeddings the best ``C`` is large).
C_GRID: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)


def fit_probe(
    x: np.ndarray,
    y: list[str],
    c: float | None = None,
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 1000,
    class_weight: str | None = None,
) -> tuple[LinearProbe, dict[str, Any]]:
    """Fit a logistic-regression probe and cross-validate it.

    Args:
        x: ``(n, d)`` float32 L2-normalised embeddings of the labelled rows.
        y: ``n`` class names.
        c: inverse L2 regularisation strength (scikit-learn's ``C``); ``None``: the value of
            :data:`C_GRID` with the best cross-validated macro-F1 (ties: the smaller).
        folds: stratified cross-validation folds (at most ``n // 2``; classes rarer than
            the fold count are kept, as scikit-learn allows).
        seed: fold shuffling seed.
        class_weight: scikit-learn's ``class_weight``; ``"balanced"`` weighs each class by
            the inverse of its share, for a rare class labelled in few rows (the adult probe).

    Returns:
        ``(probe, cv)`` where ``cv`` holds ``C``, ``accuracy``, ``macro_f1``, ``folds``,
        ``rows``, ``classes`` (and ``sweep``: the scores of each ``C`` tried), measured with
        ``cross_val_predict``, and ``oof_proba``: the ``(n, C)`` float32 out-of-fold
        probabilities of the chosen ``C`` (columns in ``probe.classes`` order), for
        calibrating a threshold on scores the probe did not train on.

    Raises:
        EclipError: fewer than 2 classes.
    """
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = np.asarray(y, dtype=str)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise EclipError(
            f"a probe needs at least 2 classes; the labelled rows have {len(classes)} ({', '.join(classes[:3])})."
        )
    cv: dict[str, Any] = {"rows": int(len(labels)), "classes": int(len(classes))}
    n_folds = int(min(folds, len(labels) // 2))
    grid = (c,) if c is not None else C_GRID
    sweep: list[dict[str, float]] = []
    oof, oofs = None, []
    if n_folds >= 2:
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        for c_ in grid:
            with warnings.catch_warnings():  # classes rarer than the fold count still train and predict
                warnings.filterwarnings("ignore", message=".*least populated class.*")
                warnings.filterwarnings("ignore", category=UserWarning)
                oof_ = cross_val_predict(
                    LogisticRegression(C=c_, max_iter=max_iter, class_weight=class_weight),
                    x,
                    labels,
                    cv=splitter,
                    method="predict_proba",
                )
            pred = classes[oof_.argmax(axis=1)]
            oofs.append(oof_.astype(np.float32))
            sweep.append(
                {
                    "C": c_,
                    "accuracy": round(float(accuracy_score(labels, pred)), 4),
                    "macro_f1": round(float(f1_score(labels, pred, average="macro")), 4),
                }
            )
        best = max(sweep, key=lambda r: (r["macro_f1"], -r["C"]))
        cv.update(folds=n_folds, **best)
        oof = oofs[sweep.index(best)]
        if len(sweep) > 1:
            cv["sweep"] = sweep
    else:
        cv["C"] = grid[0] if c is not None else 1.0
    model = LogisticRegression(C=cv["C"], max_iter=max_iter, class_weight=class_weight)
    model.fit(x, labels)
    coef = model.coef_.astype(np.float32)
    intercept = model.intercept_.astype(np.float32)
    if oof is not None:
        cv["oof_proba"] = oof  # (n, C) out-of-fold probabilities of the chosen C, classes sorted
    if coef.shape[0] == 1:  # binary: sigmoid(w.x + b) = softmax over [-(w.x + b)/2, (w.x + b)/2]
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2], dtype=np.float32)
    return LinearProbe(
        classes=[str(c_) for c_ in model.classes_],
        coef=coef,
        intercept=intercept,
        meta={"C": cv["C"], "cv": {k: v for k, v in cv.items() if k != "oof_proba"}},
    ), cv


def combine(zero_shot_proba: np.ndarray, probe_log_proba: np.ndarray, prior_weight: float = 0.5) -> np.ndarray:
    """Zero-shot prior plus probe: ``softmax(w log p_zero_shot + (1 - w) log p_probe)``.

    A weighted product of experts over the same ``L`` labels; ``w = prior_weight`` in
    [0, 1] (0: the probe alone, 1: zero-shot alone). Both inputs are ``(n, L)``; labels the
    probe never saw should carry a small floor probability (see
    :func:`align_probe`). Returns ``(n, L)`` float32 probabilities.
    """
    logp = prior_weight * np.log(np.maximum(zero_shot_proba, 1e-12)) + (1.0 - prior_weight) * probe_log_proba
    return softmax(logp)


def align_probe(probe: LinearProbe, log_proba: np.ndarray, names: list[str], floor: float = 1e-3) -> np.ndarray:
    """The probe's ``(n, C)`` log-probabilities mapped onto ``names`` (``(n, L)``): a label
    the probe has no class for gets ``log(floor)``.

    Raises:
        EclipError: none of the probe's classes is among ``names``.
    """
    pos = {c: i for i, c in enumerate(probe.classes)}
    cols = [pos.get(n_) for n_ in names]
    if all(c_ is None for c_ in cols):
        raise EclipError(
            f"none of the probe's classes ({', '.join(probe.classes[:5])}, ...) is among the --labels; they must name the same classes."
        )
    out = np.full((len(log_proba), len(names)), np.log(floor), dtype=np.float32)
    for j, c_ in enumerate(cols):
        if c_ is not None:
            out[:, j] = log_proba[:, c_]
    return out
