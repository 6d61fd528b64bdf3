"""The ``filter-adult`` job: flag adult and sexual-wellness products, calibrated or few-shot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.classify import (
    ADULT_CONCEPTS,
    ADULT_LOGIT_SCALE,
    DEFAULT_TEMPLATES,
    DEFAULT_THRESHOLD as ADULT_THRESHOLD,
    GENERAL_CONCEPTS,
    LinearProbe,
    adult_probability,
    adult_scores,
    concept_vectors,
    fit_probe,
)
from eclip.errors import EclipError, RunDirError
from eclip.evaluation import at_threshold, binary_gold, binary_metrics, load_class_labels, threshold_for_precision
from eclip.evaluation.gold import TRUE_VALUES
from eclip.jobs.run import created, start_run, versions, write_manifest
from eclip.jobs.source import CatalogSource, label_encoder, row_vectors
from eclip.progress import console
from eclip.rundir import write_parquet


@dataclass
class AdultFilterConfig(CatalogSource):
    """Settings of :func:`filter_adult`; every field is recorded in the manifest.

    Attributes:
        id_col, text_cols, image_col, image_root, allow_outside_root, model: as in
            :class:`EmbedConfig`.
        vectors: ``text``, ``image`` or ``fused``; ``None``: fused with images, else text.
        threshold: flag rows whose adult score reaches it; ``None``: calibrated when
            ``calibrate`` is given, else :data:`eclip.classify.DEFAULT_THRESHOLD`.
        calibrate: a labelled table (``id_col`` + ``label_col``); label_col: its column;
            positive: the value meaning "adult" (default: ``true`` / ``1`` / ``yes``).
        target_precision: the calibrated threshold is the lowest reaching this precision.
        holdout: share of the labelled rows kept out of calibration (random, ``seed``) and
            used to measure the chosen threshold.
        fit_probe: few-shot mode (needs ``calibrate``): fit a logistic-regression probe on
            the calibration rows' vectors plus their zero-shot log-odds; the score becomes the
            probe's probability and the threshold is calibrated on its out-of-fold scores.
            Saved as ``out/adult_probe.npz``.
        probe: an ``adult_probe.npz`` from an earlier run to score with (and its threshold,
            unless ``threshold`` or ``calibrate`` is given).
        logit_scale, templates: zero-shot scoring (see :mod:`eclip.classify.adult`).
    """

    vectors: str | None = None
    threshold: float | None = None
    calibrate: Path | None = None
    label_col: str | None = None
    positive: str | None = None
    target_precision: float = 0.9
    holdout: float = 0.0
    seed: int = 0
    fit_probe: bool = False
    probe: Path | None = None
    logit_scale: float = ADULT_LOGIT_SCALE
    templates: tuple[str, ...] = DEFAULT_TEMPLATES


def _check_calibration_labels(labels: dict[str, str], cfg: AdultFilterConfig) -> None:
    """Refuse calibration labels with no positive or no negative row.

    Raises:
        EclipError: naming the values the column does hold.
    """
    values = sorted(set(labels.values()))
    is_positive = [(v == cfg.positive) if cfg.positive is not None else v.lower() in TRUE_VALUES for v in labels.values()]
    meaning = f"--positive {cfg.positive!r}" if cfg.positive is not None else "true/1/yes (pass --positive VALUE)"
    shown = ", ".join(repr(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")
    if not any(is_positive):
        raise EclipError(f"{cfg.calibrate}: no row of column {cfg.label_col!r} means adult under {meaning}; its values are {shown}.")
    if all(is_positive):
        raise EclipError(f"{cfg.calibrate}: every row of column {cfg.label_col!r} means adult under {meaning}; calibration needs negative rows too.")


def filter_adult(source: str | Path, out: str | Path, cfg: AdultFilterConfig | None = None) -> dict[str, Any]:
    """Score every row for adult / sexual-wellness content and flag it
    (:mod:`eclip.classify.adult`).

    Writes ``flagged.parquet`` (every row once: id, adult_score in [0, 1] (the zero-shot
    score, or the probe's probability), zero_shot_score, flagged, nearest_concept, status
    ``scored`` / ``no_vector``) and ``manifest.json`` (the threshold
    and where it came from, the calibration and its held-out check, counts and the most
    flagged concepts).

    Returns:
        The manifest.

    Raises:
        CatalogError, ModelError: bad input or model. GoldError: bad calibration labels.
        EclipError: bad settings, or calibration rows without positives or negatives.
    """
    cfg = cfg or AdultFilterConfig()
    if cfg.calibrate is not None and cfg.label_col is None:
        raise EclipError("--calibrate needs --label-col, the column saying which labelled rows are adult.")
    if cfg.fit_probe and (cfg.calibrate is None or cfg.probe is not None):
        raise EclipError("--fit-probe fits on the labelled rows of --calibrate (and replaces --probe); give --calibrate, not --probe.")
    if not 0.0 <= cfg.holdout < 1.0 or not 0.0 < cfg.target_precision <= 1.0:
        raise EclipError("--holdout must be in [0, 1) and --target-precision in (0, 1].")
    if cfg.calibrate is not None:  # a label file without positives fails before embedding, not after
        _check_calibration_labels(load_class_labels(cfg.calibrate, cfg.id_col, cfg.label_col), cfg)
    out, timer = start_run(out)
    emb_dir, emb, modality, x_all, present = row_vectors(source, out, cfg, cfg.vectors, timer)
    encoder = label_encoder(emb, emb_dir, cfg.model)
    n = len(emb.ids)
    with timer("score"):
        concepts = concept_vectors(encoder.encode, cfg.templates)
        score = np.zeros(n, dtype=np.float32)
        log_odds = np.zeros(n, dtype=np.float32)
        nearest = np.full(n, -1, dtype=np.int64)
        score[present], log_odds[present], nearest[present] = adult_scores(np.ascontiguousarray(x_all[present]), concepts, len(ADULT_CONCEPTS), cfg.logit_scale)
    names = list(ADULT_CONCEPTS) + list(GENERAL_CONCEPTS)
    # the probe's input: the vectors plus the zero-shot log-odds (built only when a probe is used)
    features = np.hstack([x_all, np.clip(log_odds, -30, 30)[:, None]]) if (cfg.fit_probe or cfg.probe is not None) else None
    zero_shot = score.copy()
    threshold, source_of_threshold, calibration, probe_info = cfg.threshold, "given", None, None
    if cfg.probe is not None:
        probe = LinearProbe.load(cfg.probe)
        if probe.meta.get("model") != emb.manifest.get("model") or probe.meta.get("vectors") != modality or probe.meta.get("task") != "adult":
            raise RunDirError(f"{cfg.probe} is not an adult probe for {modality} vectors of {emb.manifest.get('model', {}).get('name')}; fit one here with --calibrate ... --fit-probe.")
        score = np.where(present, adult_probability(probe, features), 0.0).astype(np.float32)
        probe_info = {"loaded": str(Path(cfg.probe).resolve()), "cv": probe.meta.get("cv")}
        if threshold is None and cfg.calibrate is None:
            threshold, source_of_threshold = float(probe.meta["threshold"]), "probe"
    if cfg.calibrate is not None:
        rows, y = binary_gold(load_class_labels(cfg.calibrate, cfg.id_col, cfg.label_col), emb.ids, cfg.positive)
        keep = present[rows]
        rows, y = rows[keep], y[keep]
        cal = np.ones(len(rows), dtype=bool)
        if cfg.holdout > 0:
            cal[np.random.default_rng(cfg.seed).permutation(len(rows))[: int(round(cfg.holdout * len(rows)))]] = False
        cal_scores = score[rows[cal]]
        if cfg.fit_probe:
            with timer("probe_fit"), console.status(f"fitting the adult probe on {int(cal.sum()):,} labelled rows"):
                probe, cv = fit_probe(features[rows[cal]], np.where(y[cal], "adult", "other").tolist(), seed=cfg.seed)
            cal_scores = cv["oof_proba"][:, probe.classes.index("adult")] if "oof_proba" in cv else adult_probability(probe, features[rows[cal]])
            score = np.where(present, adult_probability(probe, features), 0.0).astype(np.float32)
        point = threshold_for_precision(cal_scores, y[cal], cfg.target_precision)
        if cfg.fit_probe:
            probe.meta.update(task="adult", model=emb.manifest.get("model"), vectors=modality, logit_scale=cfg.logit_scale, threshold=point.threshold, target_precision=cfg.target_precision)
            probe.save(out / "adult_probe.npz")
            probe_info = {"saved": "adult_probe.npz", "features": "vectors + zero-shot log-odds", "cv": probe.meta["cv"], "threshold_from": "out-of-fold probabilities"}
        calibration = {
            "file": str(Path(cfg.calibrate).resolve()), "label_col": cfg.label_col, "positive": cfg.positive, "target_precision": cfg.target_precision,
            "rows": int(cal.sum()), "positives": int(y[cal].sum()), "on_calibration_rows": point.as_dict(),
        }
        if not point.met_target:
            console.print(f"[yellow]no threshold reaches precision {cfg.target_precision} on the calibration rows; using the most precise one ({point.precision:.3f}).[/]")
        if cfg.threshold is None:
            threshold, source_of_threshold = point.threshold, "calibrated"
        if cfg.holdout > 0:
            held = ~cal
            calibration["holdout"] = {
                "fraction": cfg.holdout, "seed": cfg.seed, "rows": int(held.sum()), "positives": int(y[held].sum()),
                "at_calibrated_threshold": (held_point := at_threshold(score[rows[held]], y[held], point.threshold, cfg.target_precision)).as_dict(),
                **binary_metrics(score[rows[held]], y[held], cfg.target_precision),
            }
            if not held_point.met_target:
                console.print(f"[yellow]target not met on the held-out rows (P {held_point.precision:.3f} < {cfg.target_precision:g}).[/]")
            if cfg.fit_probe or cfg.probe is not None:
                calibration["holdout"]["zero_shot"] = binary_metrics(zero_shot[rows[held]], y[held], cfg.target_precision)
    if threshold is None:
        threshold, source_of_threshold = ADULT_THRESHOLD, "default"
    flagged = present & (score >= threshold)
    frame = pl.DataFrame(
        {
            "id": emb.ids,
            "adult_score": np.where(present, score, np.nan).astype(np.float32),
            "zero_shot_score": np.where(present, zero_shot, np.nan).astype(np.float32),
            "flagged": flagged,
            "nearest_concept": [names[i] if i >= 0 else None for i in nearest],
            "status": np.where(present, "scored", "no_vector").tolist(),
        },
        schema={"id": pl.String, "adult_score": pl.Float32, "zero_shot_score": pl.Float32, "flagged": pl.Boolean, "nearest_concept": pl.String, "status": pl.String},
    )
    with timer("write"):
        write_parquet(frame, out / "flagged.parquet")
    top = frame.filter(pl.col("flagged"))["nearest_concept"].value_counts(sort=True).head(10)
    manifest = {
        "job": "filter-adult",
        "created": created(),
        "inputs": cfg.inputs(source, emb),
        "model": emb.manifest.get("model"),
        "embeddings": {"dir": str(emb_dir.resolve()), "key": emb.key, "vectors": modality},
        "threshold": {"value": float(threshold), "source": source_of_threshold, "default": ADULT_THRESHOLD},
        "calibration": calibration,
        "probe": probe_info,
        "concepts": {"adult": list(ADULT_CONCEPTS), "general": list(GENERAL_CONCEPTS), "templates": list(cfg.templates), "logit_scale": cfg.logit_scale},
        "summary": {
            "rows": len(emb.ids), "scored": int(present.sum()), "flagged": int(flagged.sum()), "flagged_fraction": round(float(flagged.sum() / max(1, present.sum())), 4),
            "no_vector": int((~present).sum()), "flagged_by_concept": dict(zip(top["nearest_concept"].to_list(), top["count"].to_list())),
        },
        "timings_s": timer.timings(),
        "outputs": {"flagged": "flagged.parquet", **({"probe": "adult_probe.npz"} if cfg.fit_probe else {})},
        "versions": versions(),
    }
    return write_manifest(manifest, out)
