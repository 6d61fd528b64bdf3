"""The ``link`` job: match one catalog against another (record linkage between two sources:
price monitoring, supplier feeds), never pairing two rows of one source.

    LEFT, RIGHT -> embeddings (one model) -> index of the larger side, searched by the other
    -> cross pairs (+ model-code blocks across sides) -> signals and score (as dedupe)
    -> match probability (score mixture, learned per catalog pair) -> assignment

splink calls this ``link_only`` and the ``dedupe`` library ``RecordLink``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import Catalog, load_catalog
from eclip.checks import ConfigError, Runtime, check_choice, check_range, recheck
from eclip.encoders import DEFAULT_MODEL, CharNgramTfidf, Embeddings, EmbedSettings, extract_codes, load_embeddings
from eclip.errors import EclipError, RunDirError
from eclip.index import FLAT_MAX
from eclip.jobs.attributes import catalog_attributes
from eclip.jobs.embed import EmbedConfig, embed
from eclip.jobs.link_stages import Side, agreement, check_same_fusion, check_signals, propose_cross, score_cross
from eclip.jobs.run import StageTimer, created, start_run, versions, write_manifest
from eclip.matcher import (
    DEFAULT_THRESHOLD,
    SIGNALS,
    ModalityThresholds,
    ScoreWeights,
    group,
    passing_counts,
    union_candidates,
)
from eclip.matcher.assignment import LinkMode, expected_one_to_one_links, one_to_many, one_to_one
from eclip.matcher.mixture import MIN_MATCH_SCORE, fit_score_mixture
from eclip.matcher.pair_scoring import score_before_penalties
from eclip.progress import console
from eclip.rundir import fingerprint, write_parquet

#: The options that name each side's columns, for the catalog's messages.
SIDE_FLAGS = {
    side: {"id": f"--{side}-id-col", "text": f"--{side}-text-cols", "image": f"--{side}-image-col"}
    for side in ("left", "right")
}


def refuse_same_file(left: Path, right: Path) -> None:
    """Refuse to link a catalog to itself: the same file, or a byte-identical copy.

    Raises:
        ConfigError: they are, saying what to run instead.
    """
    import filecmp

    if not (left.is_file() and right.is_file()):
        return  # load_catalog names a missing file
    if left.samefile(right) or filecmp.cmp(left, right, shallow=False):
        how = "the same file" if left.samefile(right) else "byte-identical copies"
        raise ConfigError(
            f"{left} and {right} are {how}: every row would link to itself at p = 1. To find duplicates in one "
            "catalog run `eclip dedupe`; to link it to itself anyway pass --allow-same-file."
        )


@dataclass
class LinkConfig:
    """Settings of :func:`link`; every field is recorded in the manifest.

    Attributes:
        left_id_col, right_id_col: id columns (``right_id_col`` ``None``: the left one).
        left_text_cols, right_text_cols: columns joined into each side's title (``None``:
            found by name, as in ``embed``; ``right_text_cols`` ``None`` with
            ``left_text_cols`` set: the same columns).
        left_sep, right_sep, left_encoding, right_encoding: each CSV's delimiter and
            encoding (``None``: sniffed, as in :func:`eclip.catalog.load_catalog`).
        left_image_col, right_image_col: columns of image paths or URLs (``right_image_col``
            ``None``: the left one); images need an open_clip model.
        left_image_root, right_image_root: the folders each side's image paths are relative
            to, and may not leave (``None``: the catalog file's folder).
        allow_outside_root, allow_private_urls: as in :class:`EmbedConfig`, for both sides.
        model, runtime: the one model (and runtime) that embeds both sides.
        left_embeddings, right_embeddings: embeddings directories (``eclip embed``) to use
            instead of embedding; both must come from one model.
        signals: signals that propose and score links, among ``text``, ``image``,
            ``fused``, ``phash`` (as in :class:`DedupeConfig`); ``None``: every one both
            sides' embeddings have.
        image_threshold, fused_threshold, phash_max_distance: each image signal's own
            threshold, as in :class:`DedupeConfig`.
        k: neighbours of each row of the smaller side in the larger side's index.
        mode: ``one-to-one`` (maximum-weight bipartite matching), ``one-to-many`` (each
            RIGHT row to its best LEFT row) or ``many-to-many`` (average-linkage groups
            across the sources).
        threshold: ``None``: match probability 0.5 under a score mixture fitted to this
            pair of catalogs; else the minimum raw score of a link.
        lexical: TF-IDF, model-code, quantity and brand signals (and code blocking).
        max_code_block, weights, batch_size, workers, flat_max, min_match_score: as in
            :class:`DedupeConfig` (the learned boundary is never below ``min_match_score``).
        allow_same_file: link a file to itself (or to a byte-identical copy); refused
            otherwise, since every row would link to itself at p = 1 (``dedupe`` is the
            command for one catalog).
    """

    left_id_col: str = "id"
    right_id_col: str | None = None
    left_text_cols: list[str] | None = None
    right_text_cols: list[str] | None = None
    left_sep: str | None = None
    right_sep: str | None = None
    left_encoding: str | None = None
    right_encoding: str | None = None
    left_image_col: str | None = None
    right_image_col: str | None = None
    left_image_root: Path | None = None
    right_image_root: Path | None = None
    allow_outside_root: bool = False
    allow_private_urls: bool = False
    model: str = DEFAULT_MODEL
    runtime: Runtime = "auto"
    left_embeddings: Path | None = None
    right_embeddings: Path | None = None
    signals: tuple[str, ...] | None = None
    image_threshold: float = ModalityThresholds.image
    fused_threshold: float = ModalityThresholds.fused
    phash_max_distance: int = ModalityThresholds.phash
    k: int = 10
    mode: LinkMode = "one-to-one"
    threshold: float | None = None
    lexical: bool = True
    max_code_block: int = 20
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    batch_size: int = 64
    workers: int = -1
    flat_max: int = FLAT_MAX
    allow_same_file: bool = False
    min_match_score: float = MIN_MATCH_SCORE

    def __post_init__(self) -> None:
        check_range(self, "min_match_score", -2.0, 2.0)
        check_choice(self, "runtime", Runtime)
        check_range(self, "k", 1)
        check_choice(self, "mode", LinkMode)
        check_range(self, "threshold", -2.0, 2.0)
        check_range(self, "image_threshold", -1.0, 1.0)
        check_range(self, "fused_threshold", -1.0, 1.0)
        check_range(self, "phash_max_distance", 0, 64)
        check_range(self, "max_code_block", 2)
        check_range(self, "batch_size", 1)
        check_range(self, "workers", -1)
        check_range(self, "flat_max", 0)
        for signal in self.signals or ():
            if signal not in SIGNALS:
                raise ConfigError(f"LinkConfig.signals holds {signal!r}; choose among {', '.join(SIGNALS)}.")
        if self.signals is not None and not self.signals:
            raise ConfigError(f"LinkConfig.signals is empty; choose among {', '.join(SIGNALS)}.")

    @property
    def thresholds(self) -> ModalityThresholds:
        text = DEFAULT_THRESHOLD if self.threshold is None else self.threshold
        return ModalityThresholds(text, self.image_threshold, self.fused_threshold, self.phash_max_distance)

    def side(self, side: str) -> dict[str, Any]:
        """``side``'s (``left`` or ``right``) columns, file dialect and embeddings, RIGHT's
        id, title and image columns falling back on LEFT's."""
        if side == "left":
            cols = {"id_col": self.left_id_col, "text_cols": self.left_text_cols, "image_col": self.left_image_col}
        else:
            cols = {
                "id_col": self.right_id_col or self.left_id_col,
                "text_cols": self.right_text_cols if self.right_text_cols is not None else self.left_text_cols,
                "image_col": self.right_image_col or self.left_image_col,
            }
        own = {k: getattr(self, f"{side}_{k}") for k in ("image_root", "sep", "encoding", "embeddings")}
        return cols | own

    def check_images_wanted(self) -> None:
        """Refuse, before anything is embedded, image signals that a side cannot have: no
        image column and no embeddings directory (which may hold images).

        Raises:
            EclipError: naming the side and the option that gives it images.
        """
        for s in [s for s in self.signals or () if s != "text"]:
            for side in ("left", "right"):
                c = self.side(side)
                if c["image_col"] is None and c["embeddings"] is None:
                    raise EclipError(
                        f"--signals {s} needs images on both sides, but {side.upper()} has no image column: "
                        f"pass --{side}-image-col{' with an open_clip --model' if s != 'phash' else ''}, "
                        f"or leave {s} out of --signals."
                    )


def _side_embeddings(cat: Catalog, work: Path, cfg: LinkConfig, side: str, timer: StageTimer) -> Embeddings:
    """A side's embeddings: read from its given directory, or made (resumably) under ``work``."""
    c = cfg.side(side)
    given = c["embeddings"]
    if given is None:
        ecfg = EmbedConfig(
            model=cfg.model,
            id_col=cat.id_col,
            text_cols=list(cat.text_cols),
            sep=c["sep"],
            encoding=c["encoding"],
            image_col=cat.image_col,
            image_root=c["image_root"],
            allow_outside_root=cfg.allow_outside_root,
            allow_private_urls=cfg.allow_private_urls,
            runtime=cfg.runtime,
            settings=EmbedSettings(batch_size=cfg.batch_size, workers=cfg.workers),
        )
        with timer(f"embed_{side}"):
            embed(cat.path, work, ecfg)
    folder = given or work
    emb = load_embeddings(folder)
    if emb.ids != cat.ids:
        raise RunDirError(
            f"{folder} holds embeddings of another catalog or row order than {cat.path} "
            f"({len(emb.ids):,} rows vs {len(cat):,}); embed {cat.path} and pass that directory."
        )
    return emb


def _model_identity(emb: Embeddings) -> tuple:
    """Model name, weights digest, dimension, and whether int8 made the vectors (torch and
    onnx fp32 give the same vectors; int8 does not)."""
    m = emb.manifest.get("model") or {}
    return (m.get("name"), m.get("weights"), m.get("dim"), emb.manifest.get("runtime") == "onnx-int8")


def check_same_model(left: Embeddings, right: Embeddings, left_name: str, right_name: str) -> None:
    """Refuse two sides embedded with different models (their cosines mean nothing).

    Raises:
        RunDirError: the model name, weights, dimension or int8 runtime differ.
    """
    if _model_identity(left) != _model_identity(right):
        ml, mr = left.manifest.get("model") or {}, right.manifest.get("model") or {}
        raise RunDirError(
            f"the sides were embedded with different models: {left_name} with {ml.get('name')!r} (weights {ml.get('weights')}, dim {ml.get('dim')}), "
            f"{right_name} with {mr.get('name')!r} (weights {mr.get('weights')}, dim {mr.get('dim')}); embed both with one --model."
        )


#: Weight of :func:`eclip.jobs.link_stages.agreement` in the assignment: it decides between
#: near-equal links only (match probabilities saturate near 1: same-title listings of
#: different articles tie with the one whose photo is identical). Measured on the fashion
#: catalog in two halves: 39 -> 61 of the 71 byte-identical photo pairs linked; Abt-Buy
#: (text only) unchanged.
TIE_BREAK = 1e-3


def _assign(
    mode: str,
    nl: int,
    nr: int,
    l: np.ndarray,
    r: np.ndarray,
    on: np.ndarray,
    threshold: float,
    tie_break: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Accepted cross pairs under ``mode`` (and, for many-to-many, a group per union row);
    ``tie_break`` (``(p,)``) decides between pairs of near-equal ``on``."""
    above = np.nan_to_num(on, nan=-np.inf) >= threshold
    accepted = np.zeros(len(l), dtype=bool)
    if mode == "many-to-many":
        g = group(nl + nr, l, nl + r, np.nan_to_num(on, nan=-np.inf, neginf=-1e9), threshold, "average")
        return g.labels[l] == g.labels[nl + r], g.labels
    sel = np.flatnonzero(above)
    weight = on[sel] - threshold + 1e-6  # positive: every pair above the threshold is worth taking
    weight = weight + TIE_BREAK * np.maximum(tie_break[sel], 0)
    fn = one_to_one if mode == "one-to-one" else one_to_many
    accepted[sel] = fn(nl, nr, l[sel], r[sel], weight)
    return accepted, None


def link(left: str | Path, right: str | Path, out: str | Path, cfg: LinkConfig | None = None) -> dict[str, Any]:
    """Link the rows of two catalogs that are the same product.

    Writes ``links.parquet`` (left_id, right_id, score, match_probability, one column per
    signal, rank; sorted by score), ``candidates.parquet`` (every cross candidate pair with
    its signals and ``linked``), ``unmatched_left.parquet`` and ``unmatched_right.parquet``
    (id, title, best candidate on the other side and its score) and ``manifest.json``.
    Embeddings and the index are cached under ``out``.

    Returns:
        The manifest.

    Raises:
        CatalogError, ModelError: bad input, naming the file and column.
        RunDirError: the sides were embedded with different models, or given embeddings
            belong to another catalog.
        ConfigError: a setting out of its range or choices (an unknown mode, say).
    """
    cfg = cfg or LinkConfig()
    recheck(cfg)
    cfg.check_images_wanted()
    if not cfg.allow_same_file:
        refuse_same_file(Path(left), Path(right))
    out, timer = start_run(out)
    with timer("read"):
        cats = {}
        for side, path in (("left", left), ("right", right)):
            c = cfg.side(side)
            cats[side] = load_catalog(
                path, c["id_col"], c["text_cols"], c["image_col"], c["sep"], c["encoding"], flags=SIDE_FLAGS[side]
            )
    lcat, rcat = cats["left"], cats["right"]
    el = _side_embeddings(lcat, out / "embeddings" / "left", cfg, "left", timer)
    er = _side_embeddings(rcat, out / "embeddings" / "right", cfg, "right", timer)
    check_same_model(el, er, str(left), str(right))
    sl, sr = Side.of("left", lcat, el), Side.of("right", rcat, er)
    signals_on = check_signals(cfg.signals, sl, sr)
    if "fused" in signals_on:
        check_same_fusion(sl, sr)
    nl, nr = len(lcat), len(rcat)
    texts = lcat.texts + rcat.texts
    lexical = cfg.lexical and "text" in signals_on
    codes = [extract_codes(t) for t in texts] if lexical else None
    with timer("search"):
        lists, info = propose_cross(sl, sr, signals_on, codes, cfg, out)
        cand = union_candidates(lists).with_columns(pl.col("a").alias("l"), (pl.col("b") - nl).alias("r"))
        sources = cand["source"]
    l, r = cand["l"].to_numpy().astype(np.int64), cand["r"].to_numpy().astype(np.int64)
    with timer("score"):
        attrs_l, attrs_r = catalog_attributes(lcat), catalog_attributes(rcat)
        used_l = {k: v for k, v in attrs_l.items() if k.endswith("_col")}
        used_r = {k: v for k, v in attrs_r.items() if k.endswith("_col")}
        attrs: dict[str, Any] = {}
        if lexical:
            attrs["quantities"] = attrs_l["quantities"] + attrs_r["quantities"]
            if "brands" in attrs_l or "brands" in attrs_r:
                attrs["brands"] = attrs_l.get("brands", [""] * nl) + attrs_r.get("brands", [""] * nr)
        if "prices" in attrs_l and "prices" in attrs_r:
            attrs["prices"] = np.concatenate([attrs_l["prices"], attrs_r["prices"]])
        tfidf = CharNgramTfidf().fit_transform(texts) if lexical else None
        signals, score = score_cross(l, r, sl, sr, signals_on, codes, tfidf, attrs, cfg)
    with timer("assign"):
        fit_on = score_before_penalties(signals, cfg.weights, cfg.thresholds) if len(l) else score
        fitted = fit_score_mixture(fit_on)  # before penalties, as dedupe's
        mixture = fitted.floored(cfg.min_match_score) if fitted is not None else None
        prob = mixture.probability(score) if mixture is not None else np.full(len(score), np.nan, np.float32)
        if cfg.threshold is not None or mixture is None:
            threshold, on, threshold_on = cfg.thresholds.text, score, "score"
        else:
            threshold, on, threshold_on = 0.5, prob, "match_probability"
        tie_break = agreement(signals, cfg.thresholds)
        accepted, labels = _assign(cfg.mode, nl, nr, l, r, on, threshold, tie_break)
    with timer("write"):
        lid, rid = np.array(lcat.ids, dtype=object), np.array(rcat.ids, dtype=object)
        table = (
            pl.DataFrame(
                {
                    "left_id": lid[l].tolist(),
                    "right_id": rid[r].tolist(),
                    "score": score,
                    "match_probability": prob,
                    **{k: v for k, v in signals.items() if k != "text_score" or len(signals_on) > 1},
                    "rank": cand["rank"],
                    "source": sources,
                    "linked": accepted,
                },
                schema_overrides={"left_id": pl.String, "right_id": pl.String},
            )
            .with_columns(pl.col(pl.Float32).fill_nan(None))
            .sort("score", descending=True, nulls_last=True)
        )
        write_parquet(table, out / "candidates.parquet")
        links = table.filter(pl.col("linked")).drop("linked", "source")
        if labels is not None:
            gid = {x: int(g) for x, g in zip(lcat.ids, labels[:nl].tolist())}
            links = links.with_columns(pl.col("left_id").replace_strict(gid, return_dtype=pl.Int64).alias("group_id"))
        write_parquet(links, out / "links.parquet")
        for side, cat, col, ok in (("left", lcat, "left_id", sl), ("right", rcat, "right_id", sr)):
            other = "right_id" if col == "left_id" else "left_id"
            best = table.group_by(col).agg(
                pl.col(other).first().alias("best_candidate"), pl.col("score").first().alias("best_score")
            )
            linked_ids = set(links[col].to_list())
            un = pl.DataFrame(
                {
                    "id": cat.ids,
                    "title": cat.texts,
                    "status": np.where(ok.usable(signals_on), "unmatched", "empty_text").tolist(),
                },
                schema_overrides={"id": pl.String},
            )
            un = un.filter(~pl.col("id").is_in(list(linked_ids))).join(best.rename({col: "id"}), on="id", how="left")
            write_parquet(un, out / f"unmatched_{side}.parquet")
    n_links = int(accepted.sum())
    expected_links = expected_one_to_one_links(nl, nr, l, r, prob) if mixture is not None else None
    warnings = []
    if expected_links is not None and n_links > 2 * expected_links + 5:
        warnings.append(
            f"{n_links:,} links, where the match model expects about {expected_links:,.0f}: "
            "many links rest on weak evidence; raise --threshold or review them."
        )
        console.print(f"[yellow]warning: {warnings[-1]}[/]")
    manifest = {
        "job": "link",
        "created": created(),
        "inputs": {
            side: {
                "catalog": str(Path(path).resolve()),
                "id_col": cat.id_col,
                "text_cols": list(cat.text_cols),
                "image_col": cat.image_col,
                "image_root": str(Path(cfg.side(side)["image_root"]).resolve())
                if cfg.side(side)["image_root"]
                else None,
                "dialect": cat.dialect.as_dict() if cat.dialect else None,
                "rows": len(cat),
                **used,
            }
            for side, path, cat, used in (("left", left, lcat, used_l), ("right", right, rcat, used_r))
        },
        "model": el.manifest.get("model"),
        "embeddings": {
            "left": str(cfg.left_embeddings or out / "embeddings" / "left"),
            "right": str(cfg.right_embeddings or out / "embeddings" / "right"),
        },
        "index": info,
        "matching": {
            "mode": cfg.mode,
            "k": cfg.k,
            "threshold": threshold,
            "threshold_on": threshold_on,
            "signals": list(signals_on),
            "thresholds": asdict(cfg.thresholds),
            "learned": {
                "mixture": mixture.as_dict() if mixture is not None else None,
                "threshold_from": "given"
                if cfg.threshold is not None
                else ("learned: match probability 0.5" if mixture is not None else "fixed default"),
            },
            "lexical": lexical,
            "weights": asdict(cfg.weights),
        },
        "counts": {
            "left_rows": nl,
            "right_rows": nr,
            "candidate_pairs": len(cand),
            "links": n_links,
            "links_by_signal": passing_counts(signals, cfg.thresholds, accepted) if len(signals_on) > 1 else {},
            "expected_links": None if expected_links is None else round(expected_links, 1),
            "left_linked": int(links["left_id"].n_unique()) if n_links else 0,
            "right_linked": int(links["right_id"].n_unique()) if n_links else 0,
            "left_unmatched": nl - (int(links["left_id"].n_unique()) if n_links else 0),
            "right_unmatched": nr - (int(links["right_id"].n_unique()) if n_links else 0),
        },
        "warnings": warnings,
        "timings_s": timer.timings(),
        "outputs": {
            "links": "links.parquet",
            "candidates": "candidates.parquet",
            "unmatched_left": "unmatched_left.parquet",
            "unmatched_right": "unmatched_right.parquet",
        },
        "versions": versions(),
        "config_fingerprint": fingerprint(asdict(cfg)),
    }
    return write_manifest(manifest, out)
