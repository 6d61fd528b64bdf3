"""The Python API: each function runs one job of the spine and writes a run directory.

    catalog -> encoders -> index -> matcher -> (evaluation)

The CLI (:mod:`eclip.cli`) is a thin layer over these functions.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import Catalog, load_catalog
from eclip.encoders import DEFAULT_TEXT_MODEL, CharNgramTfidf, embed_cached, extract_codes, load_text_encoder
from eclip.errors import EclipError, RunDirError
from eclip.evaluation import Calibration, blocking_recall, calibrate, cluster_metrics, load_gold
from eclip.index import IndexSettings, build_index, knn_self_join, load_index, save_index
from eclip.matcher import METHODS, Grouping, ScoreWeights, code_block_pairs, group, knn_pairs, merge_candidates, score_pairs
from eclip.progress import console
from eclip.rundir import MANIFEST, fingerprint, read_json, write_json, write_parquet

#: Default grouping: mutual best match. On the shared dev catalogs it beats connected
#: components at every threshold (README, "How matching works").
DEFAULT_METHOD = "mutual"
#: Default threshold on the combined score, fixed on the dev catalogs before evaluation.
DEFAULT_THRESHOLD = 0.6


@dataclass
class DedupeConfig:
    """Settings of :func:`dedupe`; every field is recorded in the manifest.

    Attributes:
        id_col: the id column. text_cols: columns joined into the text (None: by name).
        model: text encoder (see :func:`eclip.encoders.load_text_encoder`).
        k: neighbours per row in the kNN self-join.
        method: grouping method, ``mutual`` or ``components``.
        threshold: minimum combined score of a match.
        lexical: add the TF-IDF and model-code signals (and code blocking) to the embedding.
        max_code_block: rows sharing a model code are paired when there are at most this many.
        batch_size: texts per encoder forward pass.
        cache_dir: embedding cache (default ``<out>/embeddings``); share it between runs.
        index: FAISS index settings.
    """

    id_col: str = "id"
    text_cols: list[str] | None = None
    model: str = DEFAULT_TEXT_MODEL
    k: int = 10
    method: str = DEFAULT_METHOD
    threshold: float = DEFAULT_THRESHOLD
    lexical: bool = True
    max_code_block: int = 20
    batch_size: int = 64
    cache_dir: Path | None = None
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    index: IndexSettings = field(default_factory=IndexSettings)


class _Timer:
    """Wall-clock seconds per pipeline stage: ``with timer("embed"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - t0, 3)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("eclip", "faiss-cpu", "faiss-gpu-cu12", "torch", "sentence-transformers", "polars", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - absent optional packages
            continue
    return out


def read_calibration(path: str | Path) -> tuple[str, float]:
    """``(method, threshold)`` from a ``calibration.json`` written by ``eclip eval --calibrate``.

    Raises:
        RunDirError: the file is missing or lacks ``method``/``threshold``.
    """
    data = read_json(path)
    if "threshold" not in data or "method" not in data:
        raise RunDirError(f"{path}: not a calibration file (run `eclip eval ... --calibrate` to write one).")
    return str(data["method"]), float(data["threshold"])


def _embed(texts: list[str], cfg: DedupeConfig, out: Path, timer: _Timer) -> tuple[np.ndarray, dict]:
    with timer("load_model"):
        encoder = load_text_encoder(cfg.model, batch_size=cfg.batch_size)
    with timer("embed"):
        emb, info = embed_cached(encoder, texts, cfg.cache_dir or out / "embeddings")
    return emb, info


def _index_and_search(emb: np.ndarray, key: str, cfg: DedupeConfig, out: Path, timer: _Timer) -> tuple[np.ndarray, dict]:
    folder = out / "index"
    with timer("index"):
        knn = None
        try:
            knn = load_index(folder, emb, key, cfg.index)
        except RunDirError:
            console.print(f"[yellow]{folder} was built from other embeddings or settings; rebuilding it.[/]")
        if knn is None:
            knn = build_index(emb, cfg.index, k=cfg.k, key=key)
            save_index(knn, folder)
    with timer("search"):
        _, ids = knn_self_join(knn, emb, cfg.k)
    return ids, knn.info


def dedupe(catalog: str | Path, out: str | Path, cfg: DedupeConfig | None = None) -> dict[str, Any]:
    """Find match groups in a catalog and write them to the run directory ``out``.

    Writes ``groups.parquet`` (id, group_id, group_size, matched_to, score, status; every
    input row once), ``pairs.parquet`` (id_a, id_b, score, cos_embedding, cos_tfidf, code,
    rank, source, matched) and ``manifest.json``. Embeddings and the index are cached under
    ``out`` so that a rerun, or a run after a kill, reuses them.

    Returns:
        The manifest.

    Raises:
        CatalogError, ModelError: bad input; the message says what to fix.
        EclipError: unknown grouping method.
    """
    cfg = cfg or DedupeConfig()
    if cfg.method not in METHODS:
        raise EclipError(f"grouping method {cfg.method!r} is not known; use one of {', '.join(METHODS)}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timer = _Timer()
    t_start = time.perf_counter()
    with timer("read"):
        cat = load_catalog(catalog, cfg.id_col, cfg.text_cols)
    n = len(cat)
    if cat.empty_rows:
        shown = ", ".join(str(i + 1) for i in cat.empty_rows[:10])
        console.print(
            f"[yellow]{len(cat.empty_rows)} row(s) have empty text in {', '.join(cat.text_cols)} "
            f"(rows {shown}{' ...' if len(cat.empty_rows) > 10 else ''}); they are kept out of "
            "matching and written as singletons with status 'empty_text'.[/]"
        )
    rows = np.asarray(cat.usable, dtype=np.int64)
    m = len(rows)
    texts = [cat.texts[i] for i in rows]
    emb, emb_info = _embed(texts, cfg, out, timer)
    key = emb_info["key"]

    if m >= 2:
        nn, index_info = _index_and_search(emb, key, cfg, out, timer)
        with timer("candidates"):
            cand = knn_pairs(nn)
            codes = [extract_codes(t) for t in texts] if cfg.lexical else None
            if codes is not None:
                cand = merge_candidates(cand, code_block_pairs(codes, cfg.max_code_block))
            else:
                cand = cand.with_columns(pl.lit("knn").alias("source"))
        with timer("score"):
            tfidf = CharNgramTfidf().fit_transform(texts) if cfg.lexical else None
            a, b = cand["a"].to_numpy(), cand["b"].to_numpy()
            signals = score_pairs(a, b, emb, tfidf, codes, cfg.weights)
    else:
        index_info = {"kind": "none", "reason": "fewer than two rows with text"}
        cand = pl.DataFrame({"a": [], "b": [], "rank": [], "source": []}, schema={"a": pl.Int64, "b": pl.Int64, "rank": pl.UInt32, "source": pl.String})
        a = b = np.zeros(0, dtype=np.int64)
        signals = {"cos_embedding": np.zeros(0, np.float32), "score": np.zeros(0, np.float32)}

    with timer("group"):
        ga, gb = rows[a], rows[b]  # back to catalog row positions
        grouping = group(n, ga, gb, signals["score"], cfg.threshold, cfg.method)
    with timer("write"):
        groups = _groups_frame(cat, grouping)
        write_parquet(groups, out / "groups.parquet")
        ids = np.array(cat.ids, dtype=object)
        pairs = pl.DataFrame(
            {
                "id_a": ids[ga].tolist(),
                "id_b": ids[gb].tolist(),
                "score": signals["score"],
                **{k: v for k, v in signals.items() if k != "score"},
                "rank": cand["rank"],
                "source": cand["source"],
                "matched": grouping.accepted,
            }
        ).sort("score", descending=True)
        write_parquet(pairs, out / "pairs.parquet")

    total = time.perf_counter() - t_start
    sizes = groups.group_by("group_id").len()["len"]
    manifest = {
        "job": "dedupe",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": {
            "catalog": str(Path(catalog).resolve()),
            "format": Path(catalog).suffix.lstrip("."),
            "id_col": cat.id_col,
            "text_cols": list(cat.text_cols),
        },
        "model": emb_info.get("model"),
        "embeddings": {"key": key, "dim": int(emb.shape[1]), "reused_rows": emb_info["reused_rows"], "embedded_rows": emb_info["embedded_rows"]},
        "index": index_info,
        "matching": {
            "k": cfg.k,
            "method": cfg.method,
            "threshold": cfg.threshold,
            "lexical": cfg.lexical,
            "weights": asdict(cfg.weights),
            "max_code_block": cfg.max_code_block,
        },
        "counts": {
            "rows": n,
            "empty_text_rows": len(cat.empty_rows),
            "candidate_pairs": len(cand),
            "matched_pairs": int(grouping.accepted.sum()),
            "groups": int(len(sizes)),
            "multi_row_groups": int((sizes > 1).sum()),
            "rows_in_multi_row_groups": int(sizes.filter(sizes > 1).sum() or 0),
            "largest_group": int(sizes.max() or 0),
        },
        "timings_s": {**timer.seconds, "total": round(total, 3)},
        "rows_per_s": {k: round(n / v, 1) for k, v in timer.seconds.items() if v > 0},
        "outputs": {"groups": "groups.parquet", "pairs": "pairs.parquet"},
        "versions": _versions(),
        "config_fingerprint": fingerprint(asdict(cfg)),
    }
    write_json(manifest, out / MANIFEST)
    return manifest


def _groups_frame(cat: Catalog, g: Grouping) -> pl.DataFrame:
    n = len(cat)
    _, group_id = np.unique(g.labels, return_inverse=True)
    # number groups in order of their first row
    first_row = np.full(group_id.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(first_row, group_id, np.arange(n))
    renumber = np.empty_like(first_row)
    renumber[np.argsort(first_row, kind="stable")] = np.arange(len(first_row))
    gid = renumber[group_id] if n else group_id
    ids = np.array(cat.ids, dtype=object)
    has = g.best >= 0
    matched_to = np.where(has, ids[np.where(has, g.best, 0)] if n else ids, None)
    empty = np.zeros(n, dtype=bool)
    empty[cat.empty_rows] = True
    sizes = g.sizes
    status = np.where(empty, "empty_text", np.where(sizes > 1, "matched", "singleton"))
    return pl.DataFrame(
        {
            "id": cat.ids,
            "group_id": gid.astype(np.int64),
            "group_size": sizes.astype(np.int64),
            "matched_to": matched_to.tolist(),
            "score": g.best_score,
            "status": status.tolist(),
        },
        schema={"id": pl.String, "group_id": pl.Int64, "group_size": pl.Int64, "matched_to": pl.String, "score": pl.Float32, "status": pl.String},
    )


def evaluate(
    groups_path: str | Path,
    gold_path: str | Path,
    gold_id_col: str = "id",
    gold_col: str | None = None,
    singleton_clusters: tuple[str, ...] = (),
    ks: tuple[int, ...] = (1, 5, 10),
    do_calibrate: bool = False,
    target_precision: float | None = None,
    calibration_out: str | Path | None = None,
) -> dict[str, Any]:
    """Score predicted groups against gold labels; optionally calibrate the threshold.

    Reads ``groups.parquet`` and, for blocking recall and calibration, the ``pairs.parquet``
    and ``manifest.json`` beside it. Writes ``eval.json`` beside the groups, and with
    ``do_calibrate`` a ``calibration.json`` (``calibration_out``) that ``eclip dedupe
    --calibration`` reads.

    Raises:
        GoldError: bad gold file. RunDirError: the groups file is missing or malformed.
    """
    gp = Path(groups_path)
    if not gp.exists():
        raise RunDirError(f"{gp}: no such groups file; run `eclip dedupe CATALOG --out DIR` first.")
    groups = pl.read_parquet(gp)
    if not {"id", "group_id"} <= set(groups.columns):
        raise RunDirError(f"{gp}: not a groups file (needs columns id, group_id).")
    ids = groups["id"].cast(pl.String).to_list()
    pred = groups["group_id"].to_numpy()
    gold = load_gold(gold_path, ids, gold_id_col, gold_col, singleton_clusters)
    result: dict[str, Any] = {"groups": str(gp), "gold": str(gold_path), "rows": len(ids)}
    result["metrics"] = cluster_metrics(pred, gold).as_dict()
    pairs_path = gp.parent / "pairs.parquet"
    if pairs_path.exists():
        pairs = pl.read_parquet(pairs_path)
        pos = {x: i for i, x in enumerate(ids)}
        a = np.array([pos[x] for x in pairs["id_a"].to_list()], dtype=np.int64)
        b = np.array([pos[x] for x in pairs["id_b"].to_list()], dtype=np.int64)
        result["blocking"] = {k: round(v, 4) for k, v in blocking_recall(a, b, pairs["rank"].cast(pl.Float64).to_numpy(), gold, ks).items()}
        if do_calibrate:
            manifest = read_json(gp.parent / MANIFEST)
            method = manifest.get("matching", {}).get("method", DEFAULT_METHOD)
            cal: Calibration = calibrate(len(ids), a, b, pairs["score"].to_numpy(), gold, method, target_precision)
            out = Path(calibration_out) if calibration_out else gp.parent / "calibration.json"
            write_json({**cal.as_dict(), "gold": str(gold_path)}, out)
            result["calibration"] = {**cal.as_dict(), "written_to": str(out)}
    elif do_calibrate:
        raise RunDirError(f"{pairs_path}: calibration needs the scored pairs written by `eclip dedupe`.")
    write_json(result, gp.parent / "eval.json")
    return result


__all__ = ["DEFAULT_METHOD", "DEFAULT_THRESHOLD", "DedupeConfig", "EclipError", "dedupe", "evaluate", "read_calibration"]
