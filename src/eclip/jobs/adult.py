"""The ``filter-adult`` job: flag adult and sexual-wellness products at the catalog's own
base rate, or calibrated on labels, or with a few-shot probe."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import pick_category_columns, pick_text_columns
from eclip.catalog.reader import read_table_with_dialect
from eclip.checks import Vectors, check_choice, check_range, recheck
from eclip.classify import (
    ADULT_CONCEPTS,
    DEFAULT_TEMPLATES,
    TAXONOMY_FILE,
    AdultProbe,
    ExpectedOperatingPoint,
    adjust_to_base_rate,
    adult_margins,
    concept_names,
    fit_adult_probe,
    prior_log_odds,
    threshold_for_blended_precision,
)
from eclip.classify.label_free import label_free, promises
from eclip.encoders.sentence import default_cache_dir
from eclip.errors import EclipError, RunDirError
from eclip.evaluation import at_threshold, binary_gold, binary_metrics, load_class_labels, threshold_for_precision
from eclip.evaluation.gold import TRUE_VALUES
from eclip.jobs.adult_concepts import concept_vectors_for
from eclip.jobs.run import created, start_run, versions, write_manifest
from eclip.jobs.source import CatalogSource, row_vectors
from eclip.progress import console
from eclip.rundir import MANIFEST, read_json, write_parquet


@dataclass
class AdultFilterConfig(CatalogSource):
    """Settings of :func:`filter_adult`; every field is recorded in the manifest.

    Attributes:
        id_col, image_col, image_root, allow_outside_root, model: as in :class:`EmbedConfig`.
        text_cols: the columns embedded; ``None``: the title, the brand columns and every
            category or breadcrumb column found by name (:func:`text_signals`).
        vectors: ``text``, ``image`` or ``fused``; ``None``: fused with images, else text.
        threshold: flag rows whose ``adult_score`` reaches it (the zero-shot margin, or the
            probe's probability with a probe); ``None``: calibrated when ``calibrate`` is
            given; with ``probe``, chosen again for this catalog (the probe's labelled rows'
            precision blended with this catalog's expected precision, at the base rate the probe's
            scores imply); else, on the posterior after the second pass
            (:mod:`eclip.classify.second_pass`), the lowest whose expected precision at the
            catalog's estimated base rate reaches ``target_precision``. A given threshold
            applies to the margin (in [-2, 2]).
        calibrate: a labelled table (``id_col`` + ``label_col``); label_col: its column;
            positive: the value meaning "adult" (default: ``true`` / ``1`` / ``yes``).
        target_precision: the precision the threshold is chosen for, expected (no labels) or
            measured on the calibration rows.
        holdout: share of the labelled rows kept out of calibration (random, ``seed``) and
            used to measure the chosen threshold.
        fit_probe: few-shot mode (needs ``calibrate``): fit the stacked probe of
            :mod:`eclip.classify.fewshot` on the calibration rows (zero-shot prior + nearest
            labelled rows); the score becomes the probe's probability and the threshold is
            calibrated on its out-of-fold probabilities. Saved as ``out/adult_probe.npz``.
        probe: an ``adult_probe.npz`` from an earlier run to score with; its threshold is
            chosen again at this catalog's base rate unless ``threshold`` or ``calibrate`` is
            given (the threshold it was fitted with is kept in the manifest).
        templates: zero-shot prompt templates (see :mod:`eclip.classify.zeroshot`).
    """

    vectors: Vectors | None = None
    threshold: float | None = None
    calibrate: Path | None = None
    label_col: str | None = None
    positive: str | None = None
    target_precision: float = 0.9
    holdout: float = 0.0
    seed: int = 0
    fit_probe: bool = False
    probe: Path | None = None
    templates: tuple[str, ...] = DEFAULT_TEMPLATES

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "vectors", Vectors, optional=True)
        check_range(self, "threshold", -2.0, 2.0)
        check_range(self, "target_precision", 0.0, 1.0, lo_open=True)
        check_range(self, "holdout", 0.0, 1.0, hi_open=True)


def text_signals(source: str | Path, cfg: AdultFilterConfig) -> dict[str, Any]:
    """The text columns the filter embeds, by role.

    ``cfg.text_cols`` when given; for an embeddings directory, the columns it was embedded
    with; else the catalog's title column, its brand columns and every category or
    breadcrumb column (:func:`eclip.catalog.pick_category_columns`): a category path such as
    "Beauty & Hygiene > Sexual Wellness" is strong evidence a title alone may lack.

    Returns:
        ``{"text_cols": [...] or None, "chosen": "given" / "embedded" / "by name",
        "title": [...], "brand": [...], "category": [...]}`` (roles only when chosen by name;
        ``text_cols`` is ``None`` when the catalog has no title-like column, which
        loading it then reports).

    Raises:
        CatalogError: the catalog cannot be read.
    """
    if cfg.text_cols is not None:
        return {"text_cols": list(cfg.text_cols), "chosen": "given"}
    p = Path(source)
    if p.is_dir():
        return {"text_cols": read_json(p / MANIFEST).get("settings", {}).get("text_cols"), "chosen": "embedded"}
    df, _ = read_table_with_dialect(p, cfg.sep, cfg.encoding)
    columns = [c for c in df.columns if c != cfg.id_col]
    base = pick_text_columns(columns)
    if not base:
        return {"text_cols": None, "chosen": "by name"}
    category = [c for c in pick_category_columns({c: df.schema[c] for c in columns}) if c not in base]
    return {
        "text_cols": [*base, *category],
        "chosen": "by name",
        "title": base[:1],
        "brand": base[1:],
        "category": category,
    }


def _check_calibration_labels(labels: dict[str, str], cfg: AdultFilterConfig) -> None:
    """Refuse calibration labels with no positive or no negative row.

    Raises:
        EclipError: naming the values the column does hold.
    """
    values = sorted(set(labels.values()))
    is_positive = [
        (v == cfg.positive) if cfg.positive is not None else v.lower() in TRUE_VALUES for v in labels.values()
    ]
    meaning = f"--positive {cfg.positive!r}" if cfg.positive is not None else "true/1/yes (pass --positive VALUE)"
    shown = ", ".join(repr(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")
    if not any(is_positive):
        raise EclipError(
            f"{cfg.calibrate}: no row of column {cfg.label_col!r} means adult under {meaning}; its values are {shown}."
        )
    if all(is_positive):
        raise EclipError(
            f"{cfg.calibrate}: every row of column {cfg.label_col!r} means adult under {meaning}; calibration needs negative rows too."
        )


def filter_adult(source: str | Path, out: str | Path, cfg: AdultFilterConfig | None = None) -> dict[str, Any]:
    """Score every row for adult / sexual-wellness content and flag it
    (:mod:`eclip.classify.adult`).

    The concept vectors are shipped (the bundled model), cached or embedded through the
    runtime that embedded the rows (:mod:`eclip.classify.concepts`). Without labels, the
    threshold adapts to the catalog: its margins are fitted as a two-class mixture, whose
    positive weight is the estimated adult base rate (:mod:`eclip.classify.base_rate`); a
    second pass lets the catalog's sure rows raise their neighbours and lookalikes
    (:mod:`eclip.classify.second_pass`); the threshold is the lowest posterior whose expected
    precision (the flagged rows' mean posterior) reaches ``cfg.target_precision``. A catalog
    the mixture finds no adult rows in flags none. Recall is reported only as an interval over
    the base rate's doubt (:mod:`eclip.classify.intervals`), precision with its lower bound.

    Writes ``flagged.parquet`` (every row once: id; adult_score, the score the threshold
    applies to: the posterior after the second pass by default, the zero-shot margin with a
    given or calibrated threshold, the probe's probability with a probe; adult_probability
    in [0, 1], the row's posterior at the estimated base rate after the second pass (with a
    probe: its probability moved to the base rate the probe's scores imply, by EM prior
    adjustment); zero_shot_score, the margin; flagged; nearest_concept; status
    ``scored`` / ``no_vector``) and ``manifest.json`` (the text columns read, the concept
    vectors' source and key, the estimated base rate with its interval, the mixture and the
    second pass, the threshold and where it came from with its expected precision, its lower
    bound and the recall interval, the calibration and its held-out check, counts and the
    most flagged concepts).

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
        raise EclipError(
            "--fit-probe fits on the labelled rows of --calibrate (and replaces --probe); give --calibrate, not --probe."
        )
    recheck(cfg)
    if cfg.calibrate is not None:  # a label file without positives fails before embedding, not after
        assert cfg.label_col is not None  # checked above
        _check_calibration_labels(load_class_labels(cfg.calibrate, cfg.id_col, cfg.label_col), cfg)
    signals = text_signals(source, cfg)
    out, timer = start_run(out)
    emb_dir, emb, modality, x_all, present = row_vectors(
        source, out, dataclasses.replace(cfg, text_cols=signals["text_cols"]), cfg.vectors, timer
    )
    n = len(emb.ids)
    with timer("concepts"):
        concepts, concepts_info = concept_vectors_for(
            emb, emb_dir, cfg.model, tuple(cfg.templates), default_cache_dir()
        )
    with timer("score"):
        scored = x_all if present.all() else np.ascontiguousarray(x_all[present])  # no copy when every row has one
        margin = np.zeros(n, dtype=np.float32)
        nearest = np.full(n, -1, dtype=np.int64)
        margin[present], nearest[present] = adult_margins(scored, concepts, len(ADULT_CONCEPTS))
    with timer("base_rate"):
        by_probe = cfg.probe is not None or cfg.fit_probe
        lf = label_free(margin, present, scored, cfg.target_precision, cfg.seed, second=not by_probe)
    mixture, posterior = lf.mixture, lf.posterior
    names = concept_names()
    score = margin.copy()
    probability = lf.lifted.astype(np.float32)
    prior = prior_log_odds(posterior)
    calibration: dict[str, Any] | None
    threshold, source_of_threshold, calibration, probe_info, scored_by = (
        cfg.threshold,
        "given",
        None,
        None,
        "zero-shot margin",
    )
    probe: AdultProbe | None = None
    if cfg.probe is not None:
        probe = AdultProbe.load(cfg.probe)
        if (
            probe.meta.get("model") != emb.manifest.get("model")
            or probe.meta.get("vectors") != modality
            or probe.exemplars.shape[1] != x_all.shape[1]
        ):
            raise RunDirError(
                f"{cfg.probe} is an adult probe for {probe.meta.get('vectors')} vectors of "
                f"{(probe.meta.get('model') or {}).get('name')}, not {modality} vectors of "
                f"{emb.manifest.get('model', {}).get('name')}; fit one here with --calibrate ... --fit-probe."
            )
        probe_info = {
            "loaded": str(Path(cfg.probe).resolve()),
            "cv": probe.meta.get("cv"),
            "fitted_threshold": probe.meta.get("threshold"),
        }
    cal_oof: np.ndarray | None = None
    blended: ExpectedOperatingPoint | None = None
    if cfg.calibrate is not None:
        assert cfg.label_col is not None  # --calibrate without --label-col was refused above
        rows, y = binary_gold(load_class_labels(cfg.calibrate, cfg.id_col, cfg.label_col), emb.ids, cfg.positive)
        keep = present[rows]
        rows, y = rows[keep], y[keep]
        cal = np.ones(len(rows), dtype=bool)
        if cfg.holdout > 0:
            cal[np.random.default_rng(cfg.seed).permutation(len(rows))[: int(round(cfg.holdout * len(rows)))]] = False
        if cfg.fit_probe:
            with timer("probe_fit"), console.status(f"fitting the adult probe on {int(cal.sum()):,} labelled rows"):
                probe, cal_oof, _ = fit_adult_probe(x_all[rows[cal]], y[cal], prior[rows[cal]], seed=cfg.seed)
    with_probe = None
    if probe is not None:
        with timer("probe_score"):
            score = np.zeros(n, dtype=np.float32)
            score[present] = probe.proba(scored, prior[present])
            base_rate_with_probe, adjusted = adjust_to_base_rate(score[present])
            probability = np.zeros(n, dtype=np.float32)
            probability[present] = adjusted
        scored_by = "probe probability"
        with_probe = {
            "estimated": round(base_rate_with_probe, 6),
            "method": "EM prior adjustment (Saerens et al. 2002)",
        }
        if cfg.calibrate is None and threshold is None:  # a reused probe: its threshold, re-chosen at this base rate
            blended = threshold_for_blended_precision(
                score[present], probability[present], probe.oof, probe.positive, cfg.target_precision
            )
            threshold, source_of_threshold = blended.threshold, "probe"
            if not blended.met_target:
                console.print(
                    f"[yellow]no probe probability reaches precision {cfg.target_precision:g} at this catalog's "
                    f"estimated base rate ({base_rate_with_probe:.4%}): nothing is flagged. Give --threshold, or "
                    "--calibrate on labelled rows of this catalog, to flag anyway.[/]"
                )
    if cfg.calibrate is not None:
        cal_scores = cal_oof if cal_oof is not None else score[rows[cal]]
        point = threshold_for_precision(cal_scores, y[cal], cfg.target_precision)
        if probe is not None:  # the labelled rows' precision, steadied by the catalog's expected precision
            blended = threshold_for_blended_precision(
                score[present], probability[present], cal_scores, y[cal], cfg.target_precision
            )
            if blended.met_target:  # else the labelled rows' most precise threshold, as without a probe
                point = at_threshold(cal_scores, y[cal], blended.threshold, cfg.target_precision)
        if cfg.fit_probe:
            assert probe is not None
            probe.meta.update(
                task="adult",
                model=emb.manifest.get("model"),
                vectors=modality,
                threshold=point.threshold,
                target_precision=cfg.target_precision,
            )
            probe.save(out / "adult_probe.npz")
            probe_info = {
                "saved": "adult_probe.npz",
                "features": probe.meta["cv"]["features"],
                "exemplars": {"adult": int(probe.positive.sum()), "other": int((~probe.positive).sum())},
                "cv": probe.meta["cv"],
                "threshold_from": "out-of-fold probabilities",
            }
        calibration = {
            "file": str(Path(cfg.calibrate).resolve()),
            "label_col": cfg.label_col,
            "positive": cfg.positive,
            "target_precision": cfg.target_precision,
            "rows": int(cal.sum()),
            "positives": int(y[cal].sum()),
            "on_calibration_rows": point.as_dict(),
            "blended": (
                {
                    "rule": "lowest threshold where the mean of the labelled rows' (out-of-fold) precision "
                    "and the catalog's expected precision reaches the target",
                    **blended.as_dict(),
                }
                if blended is not None
                else None
            ),
        }
        if not (blended.met_target if blended is not None else point.met_target):
            console.print(
                f"[yellow]no threshold reaches precision {cfg.target_precision} on the calibration rows; using the most precise one ({point.precision:.3f}).[/]"
            )
        if cfg.threshold is None:
            threshold, source_of_threshold = point.threshold, "calibrated"
        if cfg.holdout > 0:
            held = ~cal
            calibration["holdout"] = {
                "fraction": cfg.holdout,
                "seed": cfg.seed,
                "rows": int(held.sum()),
                "positives": int(y[held].sum()),
                "at_calibrated_threshold": (
                    held_point := at_threshold(score[rows[held]], y[held], point.threshold, cfg.target_precision)
                ).as_dict(),
                **binary_metrics(score[rows[held]], y[held], cfg.target_precision),
            }
            if not held_point.met_target:
                console.print(
                    f"[yellow]target not met on the held-out rows (P {held_point.precision:.3f} < {cfg.target_precision:g}).[/]"
                )
            if cfg.fit_probe or cfg.probe is not None:
                calibration["holdout"]["zero_shot"] = binary_metrics(margin[rows[held]], y[held], cfg.target_precision)
    if threshold is None:
        threshold, source_of_threshold, scored_by = lf.point.threshold, "base rate", lf.on
        if mixture is not None:  # the threshold applies to the posterior after the second pass
            score = lf.lifted.astype(np.float32)
        if not lf.point.met_target:
            console.print(
                f"[yellow]no row reaches expected precision {cfg.target_precision:g} at the "
                f"estimated base rate ({mixture.base_rate if mixture else 0:.4%}): nothing is flagged. "
                "Give --threshold, or --calibrate on labelled rows, to flag anyway.[/]"
            )
    flagged = present & (score >= threshold)
    frame = pl.DataFrame(
        {
            "id": emb.ids,
            "adult_score": np.where(present, score, np.nan).astype(np.float32),
            "adult_probability": np.where(present, probability, np.nan).astype(np.float32),
            "zero_shot_score": np.where(present, margin, np.nan).astype(np.float32),
            "flagged": flagged,
            "nearest_concept": [names[i] if i >= 0 else None for i in nearest],
            "status": np.where(present, "scored", "no_vector").tolist(),
        },
        schema={
            "id": pl.String,
            "adult_score": pl.Float32,
            "adult_probability": pl.Float32,
            "zero_shot_score": pl.Float32,
            "flagged": pl.Boolean,
            "nearest_concept": pl.String,
            "status": pl.String,
        },
    )
    with timer("write"):
        write_parquet(frame, out / "flagged.parquet")
    top = frame.filter(pl.col("flagged"))["nearest_concept"].value_counts(sort=True).head(10)
    with timer("intervals"):
        expected = promises(lf, margin, present, flagged, probability, probe=probe is not None)
    manifest = {
        "job": "filter-adult",
        "created": created(),
        "inputs": cfg.inputs(source, emb),
        "text_signals": signals,
        "model": emb.manifest.get("model"),
        "embeddings": {"dir": str(emb_dir.resolve()), "key": emb.key, "vectors": modality},
        "base_rate": {
            "estimated": round(mixture.base_rate, 6) if mixture else None,
            "interval": lf.interval.as_dict() if lf.interval else None,
            "adult_rows_expected": round(mixture.base_rate * int(present.sum()), 1) if mixture else None,
            "target_precision": cfg.target_precision,
            "label_free_threshold": {**lf.point.as_dict(), "on": lf.on},
            "mixture": mixture.as_dict() if mixture else None,
            "second_pass": lf.second.as_dict() if lf.second else None,
            "with_probe": with_probe,
        },
        "threshold": {
            "value": float(threshold) if np.isfinite(threshold) else None,
            "source": source_of_threshold,
            "on": scored_by,
            **expected,
            **(
                {"blended_precision": round(blended.expected_precision, 4)}
                if blended is not None and blended.met_target and source_of_threshold in ("calibrated", "probe")
                else {}
            ),
        },
        "calibration": calibration,
        "probe": probe_info,
        "concepts": {
            "adult": list(ADULT_CONCEPTS),
            "ordinary": {"source": TAXONOMY_FILE.name, "count": len(names) - len(ADULT_CONCEPTS)},
            "templates": list(cfg.templates),
            "vectors": concepts_info,
        },
        "summary": {
            "rows": len(emb.ids),
            "scored": int(present.sum()),
            "flagged": int(flagged.sum()),
            "flagged_fraction": round(float(flagged.sum() / max(1, present.sum())), 4),
            "no_vector": int((~present).sum()),
            "flagged_by_concept": dict(zip(top["nearest_concept"].to_list(), top["count"].to_list())),
        },
        "timings_s": timer.timings(),
        "outputs": {"flagged": "flagged.parquet", **({"probe": "adult_probe.npz"} if cfg.fit_probe else {})},
        "versions": versions(),
    }
    return write_manifest(manifest, out)
