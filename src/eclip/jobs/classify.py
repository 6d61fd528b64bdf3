"""The ``classify`` job: zero-shot labels, a linear probe, or both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.checks import Vectors, check_choice, check_range, recheck
from eclip.classify import (
    DEFAULT_LOGIT_SCALE,
    DEFAULT_TEMPLATES,
    LinearProbe,
    Taxonomy,
    align_probe,
    classify_taxonomy,
    combine,
    fit_probe,
    flat_predictions,
    label_vectors,
    parse_labels,
    predictions_frame,
    softmax,
    taxonomy_vectors,
)
from eclip.classify.zeroshot import Hierarchy
from eclip.encoders import Embeddings, load_embeddings
from eclip.errors import EclipError, RunDirError
from eclip.evaluation import load_class_labels
from eclip.jobs.run import StageTimer, created, start_run, versions, write_manifest
from eclip.jobs.source import CatalogSource, embeddings_dir, label_encoder, row_vectors
from eclip.progress import console
from eclip.rundir import write_parquet


@dataclass
class ClassifyConfig(CatalogSource):
    """Settings of :func:`classify`; every field is recorded in the manifest.

    Attributes:
        id_col, text_cols, image_col, image_root, allow_outside_root, model: as in
            :class:`EmbedConfig` (``model`` also embeds the label prompts).
        labels: a labels file (one per line, or ``A > B > C`` taxonomy paths) for zero-shot.
        train: a labelled table (``id_col`` + ``label_col``) to fit a linear probe on; its
            rows are looked up in the source, or embedded when they are not there.
        label_col: the class column of ``train``. train_fraction: share of its labelled rows
            used (random, ``seed``), the rest left for evaluation.
        probe: a probe file saved by an earlier run (``probe.npz``).
        prior_weight: with ``labels`` and a probe, the zero-shot prior's weight ``w`` in
            ``softmax(w log p_zero_shot + (1 - w) log p_probe)``.
        vectors: ``text``, ``image`` or ``fused``; ``None``: fused with images, else text.
        k: top labels kept per row. min_score: below it, ``unknown`` (cosine for zero-shot,
            probability with a probe). logit_scale: zero-shot softmax sharpness.
        templates: prompt templates (``{}`` = the label).
        hierarchy: ``levels`` (a taxonomy top-down, level by level) or ``leaves`` (one
            choice among its leaves).
        probe_c: the probe's inverse regularisation ``C``; ``None``: chosen by cross-validated
            macro-F1 (:data:`eclip.classify.probe.C_GRID`). cv_folds: cross-validation folds.
    """

    labels: Path | None = None
    train: Path | None = None
    label_col: str | None = None
    train_fraction: float = 1.0
    probe: Path | None = None
    prior_weight: float = 0.2
    vectors: Vectors | None = None
    k: int = 5
    min_score: float | None = None
    logit_scale: float = DEFAULT_LOGIT_SCALE
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    hierarchy: Hierarchy = "levels"
    probe_c: float | None = None
    cv_folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "train_fraction", 0.0, 1.0, lo_open=True)
        check_range(self, "prior_weight", 0.0, 1.0)
        check_choice(self, "vectors", Vectors, optional=True)
        check_range(self, "k", 1)
        check_range(self, "logit_scale", 0.0, lo_open=True)
        check_choice(self, "hierarchy", Hierarchy)
        check_range(self, "probe_c", 0.0, lo_open=True)
        check_range(self, "cv_folds", 2)


def _train_rows(
    cfg: ClassifyConfig,
    emb: Embeddings,
    modality: str,
    x: np.ndarray,
    present: np.ndarray,
    out: Path,
    timer: StageTimer,
) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, Any]]:
    """Vectors and labels of the probe's training rows: ``(x_train, y, in_train, info)``;
    ``in_train`` marks the source rows used (all false when ``train`` is another catalog)."""
    assert cfg.train is not None and cfg.label_col is not None
    labelled = load_class_labels(cfg.train, cfg.id_col, cfg.label_col)
    ids = list(labelled)
    if cfg.train_fraction < 1.0:
        rng = np.random.default_rng(cfg.seed)
        ids = [ids[i] for i in np.sort(rng.permutation(len(ids))[: max(2, int(round(cfg.train_fraction * len(ids))))])]
    pos = {x_: i for i, x_ in enumerate(emb.ids)}
    in_train = np.zeros(len(emb.ids), dtype=bool)
    if all(i in pos for i in ids):
        rows = np.array([pos[i] for i in ids], dtype=np.int64)
        rows = rows[present[rows]]
        in_train[rows] = True
        x_train, y = x[rows], [labelled[emb.ids[r]] for r in rows]
        where = "source rows"
    else:  # another catalog: embed it with the same model and columns
        ecfg = cfg.embed_config(emb.manifest.get("settings", {}).get("text_cols") or cfg.text_cols)
        with timer("embed_train"):
            tdir = embeddings_dir(cfg.train, out / "train_embeddings", ecfg)
            temb = load_embeddings(tdir)
        if temb.manifest.get("model") != emb.manifest.get("model"):
            raise RunDirError(
                f"{cfg.train} was embedded with another model than the source; embed both with the same --model."
            )
        tx, tpresent = temb.vectors(modality)
        if tx is None:  # --vectors image or fused, and the labelled catalog was embedded without images
            raise RunDirError(
                f"{cfg.train} has no {modality!r} vectors; give --image-col so its images are embedded too."
            )
        tpos = {x_: i for i, x_ in enumerate(temb.ids)}
        rows = np.array([tpos[i] for i in ids if i in tpos], dtype=np.int64)
        rows = rows[tpresent[rows]]
        x_train, y = tx[rows], [labelled[temb.ids[r]] for r in rows]
        where = "another catalog"
    if len(y) < 2:
        raise EclipError(f"{cfg.train}: only {len(y)} labelled row(s) have vectors; a probe needs more.")
    info = {
        "file": str(Path(cfg.train).resolve()),
        "label_col": cfg.label_col,
        "labelled_rows": len(labelled),
        "train_rows": len(y),
        "train_fraction": cfg.train_fraction,
        "rows_from": where,
    }
    return x_train, y, in_train, info


def classify(source: str | Path, out: str | Path, cfg: ClassifyConfig | None = None) -> dict[str, Any]:
    """Classify every row of a catalog (or embeddings directory) into labels.

    * ``labels`` only: zero-shot (:mod:`eclip.classify.zeroshot`): prompt-ensembled label
      vectors, taxonomies level by level.
    * ``train`` (+ ``label_col``) or ``probe``: a logistic-regression probe
      (:mod:`eclip.classify.probe`); a fitted probe is saved as ``out/probe.npz`` with its
      cross-validated accuracy and macro-F1.
    * both: zero-shot prior times probe over the label file's leaves
      (:func:`eclip.classify.combine`).

    Writes ``predictions.parquet`` (every row once: id, label, score, probability, depth,
    top_labels, top_scores, status ``predicted`` / ``unknown`` / ``no_vector``, in_train) and
    ``manifest.json``.

    Returns:
        The manifest.

    Raises:
        LabelsError: bad labels file. CatalogError, ModelError: bad input or model.
        GoldError: bad training labels. RunDirError: embeddings or probe of another model.
        EclipError: bad settings (no labels and no probe, prior weight outside [0, 1]).
    """
    cfg = cfg or ClassifyConfig()
    if cfg.labels is None and cfg.train is None and cfg.probe is None:
        raise EclipError(
            "give --labels FILE (zero-shot), --train LABELLED --label-col COL (linear probe), or --probe FILE."
        )
    if cfg.train is not None and cfg.label_col is None:
        raise EclipError("--train needs --label-col, the column holding each labelled row's class.")
    if cfg.train is not None and cfg.probe is not None:
        raise EclipError("give --train (fit a new probe) or --probe (use a saved one), not both.")
    recheck(cfg)
    taxonomy = parse_labels(cfg.labels) if cfg.labels is not None else None  # fail before embedding
    if (
        taxonomy is not None
        and cfg.train is None
        and cfg.probe is None
        and len(taxonomy.leaves) < 2
        and cfg.min_score is None
    ):
        only = " > ".join(taxonomy.leaves[0]) if taxonomy.leaves else "(none)"
        raise EclipError(
            f"{cfg.labels} has one label ({only!r}): zero-shot classification picks among labels, so every row would get it "
            "with probability 1.0. Add the other labels (or an 'other' label), or pass --min-score to mark rows far from it unknown."
        )
    out, timer = start_run(out)
    emb_dir, emb, modality, x_all, present = row_vectors(source, out, cfg, cfg.vectors, timer)
    x = np.ascontiguousarray(x_all[present])
    described = emb.manifest.get("model", {})
    probe, probe_info, in_train = None, None, np.zeros(len(emb.ids), dtype=bool)
    if cfg.train is not None:
        x_train, y, in_train, train_info = _train_rows(cfg, emb, modality, x_all, present, out, timer)
        with (
            timer("probe_fit"),
            console.status(f"fitting a logistic-regression probe on {len(y):,} rows ({cfg.cv_folds}-fold CV)"),
        ):
            probe, cv = fit_probe(x_train, y, c=cfg.probe_c, folds=cfg.cv_folds, seed=cfg.seed)
        probe.meta.update(model=described, vectors=modality)
        probe.save(out / "probe.npz")
        probe_info = {"saved": "probe.npz", "classes": len(probe.classes), "cv": cv, "train": train_info}
    elif cfg.probe is not None:
        probe = LinearProbe.load(cfg.probe)
        if probe.meta.get("model") != described or probe.meta.get("vectors") != modality:
            raise RunDirError(
                f"{cfg.probe} was fitted on {probe.meta.get('vectors')} vectors of {probe.meta.get('model', {}).get('name')}; "
                f"these are {modality} vectors of {described.get('name')}. Fit a probe on these embeddings (--train)."
            )
        probe_info = {
            "loaded": str(Path(cfg.probe).resolve()),
            "classes": len(probe.classes),
            "cv": probe.meta.get("cv"),
        }
    with timer("classify"):
        if taxonomy is not None:
            encoder = label_encoder(emb, emb_dir, cfg.model)
        if probe is None:
            assert taxonomy is not None  # no --train and no --probe: --labels was given (checked above)
            with console.status(f"embedding {len(taxonomy.paths):,} labels x {len(cfg.templates)} prompts"):
                own = label_vectors(encoder.encode, [p[-1] for p in taxonomy.paths], cfg.templates)
            if cfg.hierarchy == "leaves":  # one flat choice among the leaves, named by their paths
                keep = [i for i, p in enumerate(taxonomy.paths) if p in set(taxonomy.leaves)]
                pred = classify_taxonomy(
                    x,
                    Taxonomy.flat([taxonomy.name(taxonomy.paths[i]) for i in keep]),
                    own[keep],
                    cfg.k,
                    cfg.min_score,
                    cfg.logit_scale,
                )
            else:
                pred = classify_taxonomy(
                    x, taxonomy, taxonomy_vectors(taxonomy, own), cfg.k, cfg.min_score, cfg.logit_scale
                )
            how = "zero-shot"
        elif taxonomy is None:
            proba = probe.proba(x)
            pred = flat_predictions(probe.classes, proba, proba, cfg.k, cfg.min_score)
            how = "probe"
        else:
            leaves = [taxonomy.name(p) for p in taxonomy.leaves]
            names = leaves if any(n_ in probe.classes for n_ in leaves) else [p[-1] for p in taxonomy.leaves]
            leaf_vecs = label_vectors(encoder.encode, [p[-1] for p in taxonomy.leaves], cfg.templates)
            zs = softmax(cfg.logit_scale * (x @ leaf_vecs.T))
            proba = combine(zs, align_probe(probe, probe.log_proba(x), names), cfg.prior_weight)
            pred = flat_predictions(names, proba, proba, cfg.k, cfg.min_score)
            how = "zero-shot prior + probe"
    frame = predictions_frame(emb.ids, present, pred, in_train)
    with timer("write"):
        write_parquet(frame, out / "predictions.parquet")
    counts = frame["status"].value_counts()
    status_counts = dict(zip(counts["status"].to_list(), counts["count"].to_list()))
    top = frame.filter(pl.col("status") == "predicted")["label"].value_counts(sort=True).head(20)
    manifest = {
        "job": "classify",
        "created": created(),
        "inputs": cfg.inputs(source, emb),
        "model": described,
        "embeddings": {"dir": str(emb_dir.resolve()), "key": emb.key, "vectors": modality, "dim": int(x_all.shape[1])},
        "method": how,
        "labels": {
            "file": str(Path(cfg.labels).resolve()),
            "labels": len(taxonomy.paths),
            "leaves": len(taxonomy.leaves),
            "depth": taxonomy.depth,
            "templates": list(cfg.templates),
            "logit_scale": cfg.logit_scale,
        }
        if taxonomy and cfg.labels is not None  # taxonomy was parsed from cfg.labels
        else None,
        "probe": probe_info,
        "settings": {
            "k": cfg.k,
            "min_score": cfg.min_score,
            "hierarchy": cfg.hierarchy,
            "prior_weight": cfg.prior_weight if how == "zero-shot prior + probe" else None,
            "seed": cfg.seed,
        },
        "counts": {
            "rows": len(emb.ids),
            **{s_: int(status_counts.get(s_, 0)) for s_ in ("predicted", "unknown", "no_vector")},
            "in_train": int(in_train.sum()),
        },
        "top_labels": dict(zip(top["label"].to_list(), top["count"].to_list())),
        "timings_s": timer.timings(),
        "outputs": {"predictions": "predictions.parquet", **({"probe": "probe.npz"} if cfg.train is not None else {})},
        "versions": versions(),
    }
    return write_manifest(manifest, out)
