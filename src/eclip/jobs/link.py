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
from eclip.errors import RunDirError
from eclip.index import FLAT_MAX, cached_index, index_info
from eclip.jobs.attributes import catalog_attributes
from eclip.jobs.embed import EmbedConfig, embed
from eclip.jobs.run import StageTimer, created, start_run, versions, write_manifest
from eclip.matcher import DEFAULT_THRESHOLD, ScoreWeights, code_block_pairs, group, score_pairs, union_candidates
from eclip.matcher.assignment import LinkMode, expected_one_to_one_links, one_to_many, one_to_one
from eclip.matcher.comparisons import price_ratio
from eclip.matcher.mixture import MIN_MATCH_SCORE, fit_score_mixture
from eclip.matcher.signals import conflict_penalty
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
        model, runtime: the one model (and runtime) that embeds both sides.
        left_embeddings, right_embeddings: embeddings directories (``eclip embed``) to use
            instead of embedding; both must come from one model.
        k: neighbours of each row of the smaller side in the larger side's index.
        mode: ``one-to-one`` (maximum-weight bipartite matching), ``one-to-many`` (each
            RIGHT row to its best LEFT row) or ``many-to-many`` (average-linkage groups
            across the sources).
        threshold: ``None``: match probability 0.5 under a score mixture fitted to this
            pair of catalogs; else the minimum raw score of a link.
        lexical: TF-IDF, model-code, quantity and brand signals (and code blocking).
        max_code_block, weights, batch_size, flat_max, min_match_score: as in
            :class:`DedupeConfig` (the learned boundary is never below ``min_match_score``).
        allow_same_file: link a file to itself (or to a byte-identical copy); refused
            otherwise, since every row would link to itself at p = 1 (``dedupe`` is the
            command for one catalog).
    """

    left_id_col: str = "id"
    right_id_col: str | None = None
    left_text_cols: list[str] | None = None
    right_text_cols: list[str] | None = None
    model: str = DEFAULT_MODEL
    runtime: Runtime = "auto"
    left_embeddings: Path | None = None
    right_embeddings: Path | None = None
    k: int = 10
    mode: LinkMode = "one-to-one"
    threshold: float | None = None
    lexical: bool = True
    max_code_block: int = 20
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    batch_size: int = 64
    flat_max: int = FLAT_MAX
    allow_same_file: bool = False
    min_match_score: float = MIN_MATCH_SCORE

    def __post_init__(self) -> None:
        check_range(self, "min_match_score", -2.0, 2.0)
        check_choice(self, "runtime", Runtime)
        check_range(self, "k", 1)
        check_choice(self, "mode", LinkMode)
        check_range(self, "threshold", -2.0, 2.0)
        check_range(self, "max_code_block", 2)
        check_range(self, "batch_size", 1)
        check_range(self, "flat_max", 0)


def _side_embeddings(
    cat: Catalog, given: Path | None, work: Path, cfg: LinkConfig, side: str, timer: StageTimer
) -> Embeddings:
    """A side's embeddings: read from ``given``, or made (resumably) under ``work``."""
    if given is None:
        ecfg = EmbedConfig(
            model=cfg.model,
            id_col=cat.id_col,
            text_cols=list(cat.text_cols),
            runtime=cfg.runtime,
            settings=EmbedSettings(batch_size=cfg.batch_size),
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


def cross_candidates(
    vl: np.ndarray, vr: np.ndarray, ok_l: np.ndarray, ok_r: np.ndarray, key: str, cfg: LinkConfig, folder: Path
) -> tuple[pl.DataFrame, dict]:
    """kNN pairs between the sides: the larger side is indexed, the smaller side searched.

    Returns:
        ``(pairs, index info)``: columns ``l``, ``r`` (row positions in each side) and
        ``rank`` (1 = the query row's nearest), unique.
    """
    rows_l, rows_r = np.flatnonzero(ok_l), np.flatnonzero(ok_r)
    if not len(rows_l) or not len(rows_r):
        return pl.DataFrame(schema={"l": pl.Int64, "r": pl.Int64, "rank": pl.UInt32}), {}
    left_indexed = len(rows_l) >= len(rows_r)
    base, base_rows, query, query_rows = (vl, rows_l, vr, rows_r) if left_indexed else (vr, rows_r, vl, rows_l)
    xb = np.ascontiguousarray(base[base_rows], dtype=np.float32)
    idx = cached_index(xb, [str(r) for r in base_rows], key, cfg.k, cfg.flat_max, folder)
    k = min(cfg.k, len(base_rows))
    _, nn = idx.search(np.ascontiguousarray(query[query_rows], dtype=np.float32), k)
    q = np.repeat(query_rows, k)
    rank = np.tile(np.arange(1, k + 1, dtype=np.uint32), len(query_rows))
    hit = nn.ravel() >= 0
    b = base_rows[np.maximum(nn.ravel(), 0)]
    l, r = (b, q) if left_indexed else (q, b)
    info = index_info(idx, cfg.k) | {"indexed": "left" if left_indexed else "right"}
    return pl.DataFrame({"l": l[hit], "r": r[hit], "rank": rank[hit]}).unique(
        ["l", "r"], keep="first", maintain_order=True
    ), info


def _assign(
    mode: str, nl: int, nr: int, l: np.ndarray, r: np.ndarray, on: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Accepted cross pairs under ``mode`` (and, for many-to-many, a group per union row)."""
    above = np.nan_to_num(on, nan=-np.inf) >= threshold
    accepted = np.zeros(len(l), dtype=bool)
    if mode == "many-to-many":
        g = group(nl + nr, l, nl + r, np.nan_to_num(on, nan=-np.inf, neginf=-1e9), threshold, "average")
        return g.labels[l] == g.labels[nl + r], g.labels
    sel = np.flatnonzero(above)
    weight = on[sel] - threshold + 1e-6  # positive: every pair above the threshold is worth taking
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
    if not cfg.allow_same_file:
        refuse_same_file(Path(left), Path(right))
    out, timer = start_run(out)
    with timer("read"):
        lcat = load_catalog(left, cfg.left_id_col, cfg.left_text_cols, None, flags=SIDE_FLAGS["left"])
        right_text = cfg.right_text_cols if cfg.right_text_cols is not None else cfg.left_text_cols
        rcat = load_catalog(right, cfg.right_id_col or cfg.left_id_col, right_text, None, flags=SIDE_FLAGS["right"])
    el = _side_embeddings(lcat, cfg.left_embeddings, out / "embeddings" / "left", cfg, "left", timer)
    er = _side_embeddings(rcat, cfg.right_embeddings, out / "embeddings" / "right", cfg, "right", timer)
    check_same_model(el, er, str(left), str(right))
    nl, nr = len(lcat), len(rcat)
    ok_l = el.has_text & np.array([bool(t) for t in lcat.texts])
    ok_r = er.has_text & np.array([bool(t) for t in rcat.texts])
    texts = lcat.texts + rcat.texts
    codes = [extract_codes(t) for t in texts] if cfg.lexical else None
    with timer("search"):
        key = fingerprint(el.key, er.key, ok_l.tolist(), ok_r.tolist())
        cand, info = cross_candidates(el.text, er.text, ok_l, ok_r, key, cfg, out / "index")
        lists = {"text": cand.select(pl.col("l").alias("a"), (pl.col("r") + nl).alias("b"), "rank")}
        if codes is not None:
            usable = np.concatenate([ok_l, ok_r])
            blocks = code_block_pairs(
                [c if usable[i] else frozenset() for i, c in enumerate(codes)], cfg.max_code_block
            )
            lists["code"] = blocks.filter((pl.col("a") < nl) & (pl.col("b") >= nl))  # across the sides only
        cand = union_candidates(lists).with_columns(pl.col("a").alias("l"), (pl.col("b") - nl).alias("r"))
        sources = cand["source"]
    l, r = cand["l"].to_numpy().astype(np.int64), cand["r"].to_numpy().astype(np.int64)
    with timer("score"):
        vectors = np.vstack([el.text, er.text])
        attrs_l, attrs_r = catalog_attributes(lcat), catalog_attributes(rcat)
        used_l = {k: v for k, v in attrs_l.items() if k.endswith("_col")}
        used_r = {k: v for k, v in attrs_r.items() if k.endswith("_col")}
        has_brands = "brands" in attrs_l or "brands" in attrs_r
        brands = (
            attrs_l.get("brands", [""] * nl) + attrs_r.get("brands", [""] * nr) if cfg.lexical and has_brands else None
        )
        tfidf = CharNgramTfidf().fit_transform(texts) if cfg.lexical else None
        quantities = attrs_l["quantities"] + attrs_r["quantities"] if cfg.lexical else None
        signals = score_pairs(l, nl + r, vectors, tfidf, codes, cfg.weights, quantities=quantities, brands=brands)
        score = signals.pop("score")
        if "prices" in attrs_l and "prices" in attrs_r:
            signals["price_ratio"] = price_ratio(np.concatenate([attrs_l["prices"], attrs_r["prices"]]), l, nl + r)
    with timer("assign"):
        fitted = fit_score_mixture(score - conflict_penalty(signals, cfg.weights))  # before penalties, as dedupe's
        mixture = fitted.floored(cfg.min_match_score) if fitted is not None else None
        prob = mixture.probability(score) if mixture is not None else np.full(len(score), np.nan, np.float32)
        if cfg.threshold is not None or mixture is None:
            threshold, on, threshold_on = (
                (cfg.threshold if cfg.threshold is not None else DEFAULT_THRESHOLD),
                score,
                "score",
            )
        else:
            threshold, on, threshold_on = 0.5, prob, "match_probability"
        accepted, labels = _assign(cfg.mode, nl, nr, l, r, on, threshold)
    with timer("write"):
        lid, rid = np.array(lcat.ids, dtype=object), np.array(rcat.ids, dtype=object)
        table = (
            pl.DataFrame(
                {
                    "left_id": lid[l].tolist(),
                    "right_id": rid[r].tolist(),
                    "score": score,
                    "match_probability": prob,
                    **signals,
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
        for side, cat, col, ok in (("left", lcat, "left_id", ok_l), ("right", rcat, "right_id", ok_r)):
            other = "right_id" if col == "left_id" else "left_id"
            best = table.group_by(col).agg(
                pl.col(other).first().alias("best_candidate"), pl.col("score").first().alias("best_score")
            )
            linked_ids = set(links[col].to_list())
            un = pl.DataFrame(
                {"id": cat.ids, "title": cat.texts, "status": np.where(ok, "unmatched", "empty_text").tolist()},
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
            "left": {
                "catalog": str(Path(left).resolve()),
                "id_col": lcat.id_col,
                "text_cols": list(lcat.text_cols),
                "rows": nl,
                **used_l,
            },
            "right": {
                "catalog": str(Path(right).resolve()),
                "id_col": rcat.id_col,
                "text_cols": list(rcat.text_cols),
                "rows": nr,
                **used_r,
            },
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
            "learned": {
                "mixture": mixture.as_dict() if mixture is not None else None,
                "threshold_from": "given"
                if cfg.threshold is not None
                else ("learned: match probability 0.5" if mixture is not None else "fixed default"),
            },
            "lexical": cfg.lexical,
            "weights": asdict(cfg.weights),
        },
        "counts": {
            "left_rows": nl,
            "right_rows": nr,
            "candidate_pairs": len(cand),
            "links": n_links,
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
