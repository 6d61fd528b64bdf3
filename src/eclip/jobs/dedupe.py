"""The ``dedupe`` jobs: match groups of a whole catalog, or of new rows against an index."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl

from eclip.catalog import Catalog, load_catalog
from eclip.catalog.phash_column import parse_phash_column
from eclip.checks import ConfigError, check_choice, check_range, recheck
from eclip.distributed import RayRunner
from eclip.encoders import (
    Embeddings,
    EmbedSettings,
    codes_of_all,
    load_embeddings,
)
from eclip.errors import EclipError, RunDirError
from eclip.index import FLAT_MAX
from eclip.jobs.attributes import catalog_attributes
from eclip.jobs.dedupe_cascade import CascadeSettings, refine_uncertain
from eclip.jobs.dedupe_checks import warn_match_rate, warn_oversized
from eclip.jobs.dedupe_stages import propose_candidates, score_all
from eclip.jobs.embed import embed
from eclip.jobs.learn import labelled_constraints, model_summary
from eclip.jobs.run import StageTimer, created, start_run, versions, write_manifest
from eclip.jobs.source import CatalogSource
from eclip.matcher import (
    DEFAULT_METHOD,
    DEFAULT_THRESHOLD,
    SIGNALS,
    GroupingMethod,
    ModalityThresholds,
    ScoreWeights,
    cohesion_summary,
    group,
    groups_frame,
    passing_counts,
    read_review,
    union_candidates,
)
from eclip.matcher.cascade import DEFAULT_BAND
from eclip.matcher.constraints import check_review_run, groups_fingerprint, identical_text_constraints
from eclip.matcher.grouping import AUTO_GROUP_SHARE
from eclip.matcher.mixture import MIN_MATCH_SCORE, MatchSettings, learn_settings
from eclip.matcher.model import load_match_model, settings_from_model
from eclip.matcher.pair_scoring import score_before_penalties
from eclip.progress import console
from eclip.rundir import fingerprint, write_parquet

#: Above this many rows with text, character n-gram TF-IDF neighbours are not proposed
#: (about 1 minute at 100k rows on 2 cores; ``bench/sparse_knn.py``).
TFIDF_KNN_MAX_ROWS = 100_000


@dataclass
class DedupeConfig(CatalogSource):
    """Settings of :func:`dedupe`; every field is recorded in the manifest.

    Attributes:
        id_col, text_cols, image_col, image_root, allow_outside_root: catalog columns and
            image location (as in :class:`EmbedConfig`).
        model: model spec (see :mod:`eclip.encoders.spec`); ignored when ``embeddings`` is set.
        embeddings: an embeddings directory from ``eclip embed`` to use instead of embedding.
        signals: signals that propose and accept matches, among ``text``, ``image``,
            ``fused``, ``phash``; ``None``: every one the embeddings have.
        k: neighbours per row in each kNN self-join.
        method: grouping method, ``auto`` (chosen per catalog), ``mutual``, ``average`` or
            ``components`` (:mod:`eclip.matcher.grouping`).
        threshold: ``None``: learned per catalog (match probability 0.5 under a mixture
            fitted to the candidate scores, :mod:`eclip.matcher.mixture`); else the minimum
            final score of a match (= the text threshold, see
            :func:`eclip.matcher.combine_modalities`).
        image_threshold, fused_threshold: minimum cosines of the image and fused signals.
        phash_max_distance: largest pHash Hamming distance of a match, bits.
        lexical: add the TF-IDF and model-code signals (and code blocking) to the text score.
        max_code_block: rows sharing a model code are paired when there are at most this many.
        batch_size: rows per encoder forward pass. workers: image-decoding workers.
        cache_dir: embeddings directory to write (default ``<out>/embeddings``).
        flat_max: below this many rows search is exact (Flat), above it IVF-PQ (see
            :func:`eclip.index.choose_factory`).
        review: a filled-in review CSV (``eclip report``): its ``same`` / ``different``
            decisions become must-link / cannot-link constraints on grouping.
        brand_col, price_col: the catalog's brand and price columns for the brand and price
            comparisons (``None``: found by name, see
            :func:`eclip.catalog.pick_attribute_column`; ``""``: leave the comparison out).
        match_model: a match model from ``eclip learn`` (:mod:`eclip.matcher.model`): it
            scores every candidate pair instead of the label-free mixture, ``threshold`` is
            then on its probability, and its labelled pairs become must-link / cannot-link
            constraints.
        min_match_score: the lowest raw score the learned boundary may take
            (:data:`eclip.matcher.mixture.MIN_MATCH_SCORE`).
        auto_group_share: ``auto`` picks ``average`` when average linkage puts at least this
            share of its grouped rows in groups of 3 or more
            (:data:`eclip.matcher.grouping.AUTO_GROUP_SHARE`).
        tfidf_knn_max_rows: with the lexical signals, each row's ``k`` nearest rows by
            character n-gram TF-IDF cosine are candidates too (language-agnostic: a title in
            a language the text model does not know still finds its twins), up to this many
            rows with text; the exact sparse top-k grows faster than linearly, so above it
            only the embedding and the model codes propose candidates.
        phash_col: a column of precomputed 64-bit perceptual hashes (16 hex digits, or
            integers, as many scrapers ship: :func:`eclip.catalog.phash_column.parse_phash_column`);
            it is the ``phash`` signal, as pHashes of images are. Not with ``image_col``.
        ray: run embedding, the kNN self-joins and pair scoring on Ray (``--ray``); grouping
            stays in this process. The output equals a run without it.
        cascade: a second text model (e.g. ``minilm`` after ``model`` ``minilm-static``): only
            the rows of candidate pairs whose match probability lies in ``(cascade_band,
            1 - cascade_band)`` are embedded by it; every pair is rescored with the merged
            cosines (:mod:`eclip.matcher.cascade`), and its kNN among those rows adds
            candidates unless ``cascade_knn`` is off (:mod:`eclip.jobs.dedupe_cascade`).
            ``cascade_max_rows`` caps those rows (the most uncertain pairs first).
    """

    embeddings: Path | None = None
    signals: tuple[str, ...] | None = None
    k: int = 10
    method: GroupingMethod = DEFAULT_METHOD
    threshold: float | None = None
    image_threshold: float = ModalityThresholds.image
    fused_threshold: float = ModalityThresholds.fused
    phash_max_distance: int = ModalityThresholds.phash
    lexical: bool = True
    max_code_block: int = 20
    batch_size: int = 64
    workers: int = -1
    cache_dir: Path | None = None
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    flat_max: int = FLAT_MAX
    review: Path | None = None
    brand_col: str | None = None
    price_col: str | None = None
    match_model: Path | None = None
    phash_col: str | None = None
    tfidf_knn_max_rows: int = TFIDF_KNN_MAX_ROWS
    min_match_score: float = MIN_MATCH_SCORE
    auto_group_share: float = AUTO_GROUP_SHARE
    ray: RayRunner | None = None
    cascade: str | None = None
    cascade_band: float = DEFAULT_BAND
    cascade_max_rows: int | None = None
    cascade_knn: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "cascade_band", 0.0, 0.5, hi_open=True)
        check_range(self, "cascade_max_rows", 2)
        check_range(self, "k", 1)
        check_choice(self, "method", GroupingMethod)
        check_range(self, "threshold", -2.0, 2.0)
        check_range(self, "image_threshold", -1.0, 1.0)
        check_range(self, "fused_threshold", -1.0, 1.0)
        check_range(self, "phash_max_distance", 0, 64)
        check_range(self, "max_code_block", 2)
        check_range(self, "batch_size", 1)
        check_range(self, "flat_max", 0)
        check_range(self, "tfidf_knn_max_rows", 0)
        check_range(self, "min_match_score", -2.0, 2.0)
        check_range(self, "auto_group_share", 0.0, 1.0)
        if self.phash_col is not None and self.image_col is not None:
            raise ConfigError(
                "DedupeConfig.phash_col and image_col are both set; the pHash comes from one of them: "
                "drop --phash-col to hash the images, or --image-col to use the column."
            )
        for signal in self.signals or ():
            if signal not in SIGNALS:
                raise ConfigError(f"DedupeConfig.signals holds {signal!r}; choose among {', '.join(SIGNALS)}.")

    @property
    def thresholds(self) -> ModalityThresholds:
        text = DEFAULT_THRESHOLD if self.threshold is None else self.threshold
        return ModalityThresholds(text, self.image_threshold, self.fused_threshold, self.phash_max_distance)


def dedupe_embeddings(cat: Catalog, cfg: DedupeConfig, out: Path, timer: StageTimer) -> Embeddings:
    """The catalog's embeddings: read from ``cfg.embeddings``, or made (resumably) in the cache."""
    if cfg.embeddings is None:
        ecfg = cfg.embed_config(
            list(cat.text_cols), settings=EmbedSettings(batch_size=cfg.batch_size, workers=cfg.workers), ray=cfg.ray
        )
        with timer("embed"):
            embed(cat.path, cfg.cache_dir or out / "embeddings", ecfg)
    folder = cfg.embeddings or cfg.cache_dir or out / "embeddings"
    with timer("load_embeddings"):
        emb = load_embeddings(folder)
    if emb.ids != cat.ids:
        raise RunDirError(
            f"{folder} holds embeddings of another catalog or row order ({len(emb.ids):,} rows vs {len(cat):,}); "
            f"run `eclip embed {cat.path} --out DIR` and pass that DIR."
        )
    made_with = emb.manifest.get("settings", {}).get("text_cols")
    if made_with is not None and list(made_with) != list(cat.text_cols):
        raise RunDirError(
            f"{folder} embedded the columns {made_with}, not {list(cat.text_cols)}; pass the same --text-cols or re-embed."
        )
    return emb


def _signals(emb: Embeddings, cfg: DedupeConfig) -> tuple[str, ...]:
    has_phash = emb.phash is not None or cfg.phash_col is not None
    available = ["text"] + (["image", "fused"] if emb.image is not None else []) + (["phash"] if has_phash else [])
    if cfg.signals is None:
        return tuple(available)
    unknown = [s for s in cfg.signals if s not in SIGNALS]
    if unknown:
        raise EclipError(f"unknown signal(s) {', '.join(unknown)}; choose among {', '.join(SIGNALS)}.")
    missing = [s for s in cfg.signals if s not in available]
    if missing:
        raise EclipError(
            f"signal(s) {', '.join(missing)} not in these embeddings (they have {', '.join(available)}); "
            "image and fused need an open_clip model and --image-col, phash needs --image-col or --phash-col."
        )
    if not cfg.signals:
        raise EclipError(f"--signals is empty; choose among {', '.join(available)}.")
    return tuple(cfg.signals)


def _keep_reviewed_groups(review: Path, out: Path) -> None:
    """Check a review file against the run it was written for (beside it, this run's last
    groups, or groups kept by an earlier review run) and keep those groups in
    ``out/reviewed/`` so that rerunning with the same review still finds them.

    Raises:
        CatalogError: a stale or edited review (:func:`eclip.matcher.constraints.check_review_run`).
    """
    kept = sorted((out / "reviewed").glob("*.parquet"))
    found = check_review_run(review, [review.parent / "groups.parquet", out / "groups.parquet", *kept])
    if found is not None and found.parent != out / "reviewed":
        groups = pl.read_parquet(found, columns=["id", "group_id"])
        write_parquet(groups, out / "reviewed" / f"{groups_fingerprint(groups)}.parquet")


def _learn(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    signals: dict[str, np.ndarray],
    score: np.ndarray,
    cfg: DedupeConfig,
    model: Any,
    constraints: Any,
) -> MatchSettings:
    """The grouping settings of the candidate pairs: a match model's, or the label-free ones."""
    fit_on = score_before_penalties(signals, cfg.weights, cfg.thresholds) if len(a) else score

    def label_free(method: str, threshold: float | None) -> MatchSettings:
        floor, share = cfg.min_match_score, cfg.auto_group_share
        return learn_settings(n, a, b, score, method, threshold, DEFAULT_THRESHOLD, floor, share, fit_on)

    if model is None:
        return label_free(cfg.method, cfg.threshold)
    auto = label_free("auto", None) if cfg.method == "auto" else None  # from every candidate score
    method: str = auto.method if auto is not None else cfg.method
    columns = {**signals, "score": score}
    free = lambda: auto if auto is not None and cfg.threshold is None else label_free(method, cfg.threshold)  # noqa: E731 - a blend or fallback
    settings = settings_from_model(
        model, str(cfg.match_model), n, a, b, columns, method, cfg.threshold, constraints, free
    )
    if cfg.method == "auto":
        settings.learned["method_chosen_by"] = f"auto: {method}, chosen from the label-free score mixture"
    return settings


def start_dedupe_run(cfg: DedupeConfig | None, out: str | Path) -> tuple[DedupeConfig, Path, StageTimer]:
    """Check the config, create the run directory, start the clock."""
    cfg = cfg or DedupeConfig()
    recheck(cfg)
    return (cfg, *start_run(out))


def dedupe(catalog: str | Path, out: str | Path, cfg: DedupeConfig | None = None) -> dict[str, Any]:
    """Find match groups in a catalog and write them to the run directory ``out``.

    Each enabled signal proposes candidates (text kNN plus model-code blocks, image kNN, fused
    kNN, pHash Hamming neighbours); every candidate is scored on every signal, and a pair
    matches when any signal passes its own threshold (:func:`eclip.matcher.combine_modalities`).

    Writes ``groups.parquet`` (id, group_id, group_size, matched_to, score, status; every
    input row once), ``pairs.parquet`` (id_a, id_b, score, one column per signal, rank,
    source, matched) and ``manifest.json``. Embeddings and indexes are cached under ``out``
    so that a rerun, or a run after a kill, reuses them.

    Returns:
        The manifest.

    Raises:
        CatalogError, ModelError: bad input; the message says what to fix.
        RunDirError: ``cfg.embeddings`` belongs to another catalog.
        EclipError: unknown grouping method or signal.
    """
    cfg, out, timer = start_dedupe_run(cfg, out)
    model = load_match_model(cfg.match_model) if cfg.match_model else None  # a bad file fails before embedding
    with timer("read"):
        cat = load_catalog(catalog, cfg.id_col, cfg.text_cols, cfg.image_col, cfg.sep, cfg.encoding)
        attrs = (
            catalog_attributes(cat, cfg.brand_col, cfg.price_col) if cfg.lexical else {}
        )  # a bad --brand-col fails before embedding
        given_phash = parse_phash_column(cat.table, cfg.phash_col, cat.path) if cfg.phash_col else None
    n = len(cat)
    emb = dedupe_embeddings(cat, cfg, out, timer)
    signals_on = _signals(emb, cfg)
    has_text = emb.has_text & np.array([bool(t) for t in cat.texts])
    phash, has_phash = given_phash if given_phash is not None else (emb.phash, emb.has_image)
    masks = {"text": has_text, "image": emb.has_image, "fused": emb.has_text | emb.has_image, "phash": has_phash}
    usable = np.zeros(n, dtype=bool)
    for s_ in signals_on:
        usable |= masks[s_]
    if cat.empty_rows:
        shown = ", ".join(str(i + 1) for i in cat.empty_rows[:10])
        console.print(
            f"[yellow]{len(cat.empty_rows)} row(s) have empty text in {', '.join(cat.text_cols)} "
            f"(rows {shown}{' ...' if len(cat.empty_rows) > 10 else ''}); they are matched on images only, "
            "or written as singletons with status 'empty_text'.[/]"
        )

    with timer("lexical"):
        codes = codes_of_all(cat.texts) if cfg.lexical and "text" in signals_on else None
    if codes is None:
        attrs = {}  # no text signal: nothing to compare the attributes with
    with timer("search"):
        lists, index_info, tfidf = propose_candidates(cat, emb, masks, signals_on, codes, phash, cfg, out)
    with timer("candidates"):
        cand = union_candidates(lists)
    a, b = cand["a"].to_numpy(), cand["b"].to_numpy()
    dim = int(emb.text.shape[1])
    with timer("score"):
        signals, score, tfidf = score_all(a, b, cat, emb, masks, signals_on, codes, phash, attrs, tfidf, cfg)
    if not (cfg.cascade and cfg.cascade_knn):
        tfidf = None  # scoring was its last use (the cascade's kNN pairs are scored with it too)
    if cfg.review:
        _keep_reviewed_groups(Path(cfg.review), out)
    constraints = read_review(cfg.review, cat.ids) if cfg.review else None
    labelled = labelled_constraints(model, cat.ids) if model is not None else None
    if labelled is not None:
        constraints = labelled[0] if constraints is None else constraints + labelled[0]
    identical = identical_text_constraints([t if has_text[i] else "" for i, t in enumerate(cat.texts)])
    if len(identical):
        constraints = identical if constraints is None else identical + constraints
    with timer("learn"):
        settings = _learn(n, a, b, signals, score, cfg, model, constraints)
    cascade_info = None
    if cfg.cascade:
        cascade = CascadeSettings(
            cfg.cascade,
            cfg.cascade_band,
            cfg.cascade_max_rows,
            cfg.runtime,
            cfg.batch_size,
            cfg.workers,
            cfg.weights,
            cfg.thresholds,
            cfg.cascade_knn,
        )
        with timer("cascade"):

            def score_new(a2: np.ndarray, b2: np.ndarray, cos: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
                return score_all(a2, b2, cat, emb, masks, signals_on, codes, phash, attrs, tfidf, cfg, cos)[:2]

            step = refine_uncertain(
                cat, has_text, a, b, signals, score, settings.probability, cascade, cfg, score_new, out
            )
            tfidf = None
            a, b, signals, score, cascade_info = step.a, step.b, step.signals, step.score, step.info
            if len(step.new_rank):
                new = pl.DataFrame(
                    {
                        "a": a[-len(step.new_rank) :],
                        "b": b[-len(step.new_rank) :],
                        "rank": step.new_rank,
                        "source": "cascade",
                    }
                )
                cand = pl.concat([cand, new.cast(cand.schema)])
        with timer("relearn"):
            settings = _learn(n, a, b, signals, score, cfg, model, constraints)
    with timer("group"):
        on = settings.probability if settings.on == "match_probability" else score
        grouping = group(n, a, b, on, settings.threshold, settings.method, constraints, settings.average_labels)
    with timer("write"):
        groups = groups_frame(cat.ids, grouping, usable)
        write_parquet(groups, out / "groups.parquet")
        ids = pl.Series(cat.ids, dtype=pl.String)  # gathered in Arrow, not as Python strings
        pairs = (
            pl.DataFrame(
                {
                    "id_a": ids.gather(a),
                    "id_b": ids.gather(b),
                    "score": score,
                    "match_probability": settings.probability,
                    **signals,
                    "rank": cand["rank"],
                    "source": cand["source"],
                    "matched": grouping.accepted,
                }
            )
            .with_columns(pl.col(pl.Float32).fill_nan(None))
            .sort("score", descending=True)
        )
        write_parquet(pairs, out / "pairs.parquet")

    sizes = groups.group_by("group_id").len()["len"]
    warnings = warn_oversized(cat.ids, groups["group_id"].to_numpy(), a, b, on, grouping.accepted, settings.method)
    rate, rate_warnings = warn_match_rate(n, grouping.labels, settings, a, b)
    warnings += rate_warnings
    matched = grouping.accepted
    manifest = {
        "job": "dedupe",
        "created": created(),
        "inputs": {
            "catalog": str(Path(catalog).resolve()),
            "format": Path(catalog).suffix.lstrip("."),
            "dialect": cat.dialect.as_dict() if cat.dialect else None,
            "id_col": cat.id_col,
            "text_cols": list(cat.text_cols),
            "image_col": cat.image_col,
            "image_root": str(Path(cfg.image_root).resolve()) if cfg.image_root else None,
            "allow_outside_root": cfg.allow_outside_root,
        },
        "model": emb.manifest.get("model"),
        "embeddings": {
            "dir": str(cfg.embeddings or cfg.cache_dir or out / "embeddings"),
            "key": emb.key,
            "dim": dim,
            "reused_rows": emb.manifest.get("reused_rows"),
            "embedded_rows": emb.manifest.get("embedded_rows"),
        },
        "index": index_info,
        "matching": {
            "signals": list(signals_on),
            "k": cfg.k,
            "method": cfg.method,
            "method_used": settings.method,
            "threshold": settings.threshold,
            "threshold_on": settings.on,
            "learned": settings.learned,
            "attributes": {k: v for k, v in attrs.items() if k.endswith("_col")},
            "thresholds": asdict(cfg.thresholds),
            "lexical": cfg.lexical,
            "weights": asdict(cfg.weights),
            "max_code_block": cfg.max_code_block,
            "review": {
                "file": str(Path(cfg.review).resolve()),
                "must_link_pairs": len(constraints.must_a),
                "cannot_link_pairs": len(constraints.cannot_a),
            }
            if cfg.review and constraints is not None  # read_review ran whenever cfg.review is set
            else None,
            "match_model": model_summary(model, cfg.match_model, labelled) if model is not None else None,
            "cascade": cascade_info,
        },
        "counts": {
            "rows": n,
            "empty_text_rows": len(cat.empty_rows),
            "unmatchable_rows": int((~usable).sum()),
            "candidate_pairs": len(cand),
            **rate,
            "identical_text_links": len(identical),
            "matched_pairs": int(matched.sum()),
            "matched_pairs_by_signal": passing_counts(signals, cfg.thresholds, matched),
            "groups": int(len(sizes)),
            "multi_row_groups": int((sizes > 1).sum()),
            "rows_in_multi_row_groups": int(sizes.filter(sizes > 1).sum() or 0),
            "largest_group": int(cast("int | None", sizes.max()) or 0),  # group sizes are integers
        },
        "groups": cohesion_summary(groups["group_id"].to_numpy(), a, b, on),
        "warnings": warnings,
        "timings_s": timer.timings(),
        "memory_by_stage": timer.memory,
        "rows_per_s": {k: round(n / v, 1) for k, v in timer.seconds.items() if v > 0},
        "outputs": {"groups": "groups.parquet", "pairs": "pairs.parquet"},
        "versions": versions(),
        "config_fingerprint": fingerprint(asdict(cfg)),
    }
    return write_manifest(manifest, out)
