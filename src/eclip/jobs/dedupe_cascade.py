"""``eclip dedupe --cascade MODEL``: a second, stronger text model for the pairs the first left
uncertain (:mod:`eclip.matcher.cascade`).

The rows to refine are written to ``<run>/cascade/rows.parquet`` (id and the catalog's joined
text) and embedded by the ordinary ``embed`` job into ``<run>/cascade/embeddings``, so a run
killed while the transformer works resumes from its finished shards (a rerun picks the same
rows: the first tier's embeddings, index and scores are cached or deterministic).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import Catalog
from eclip.checks import Runtime
from eclip.encoders import EmbedSettings, load_embeddings
from eclip.jobs.embed import EmbedConfig, embed
from eclip.matcher import ModalityThresholds, ScoreWeights
from eclip.matcher.cascade import merge_cosines, uncertain_rows
from eclip.matcher.pair_scoring import with_embedding_cosines
from eclip.matcher.signals import cosine_pairs
from eclip.progress import console
from eclip.rundir import write_parquet


@dataclass(frozen=True)
class CascadeSettings:
    """The second tier of a dedupe run (the fields of :class:`eclip.jobs.dedupe.DedupeConfig`
    it reads)."""

    model: str
    band: float
    max_rows: int | None
    runtime: Runtime
    batch_size: int
    workers: int
    weights: ScoreWeights
    thresholds: ModalityThresholds


def refine_uncertain(
    cat: Catalog,
    has_text: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    signals: dict[str, np.ndarray],
    score: np.ndarray,
    probability: np.ndarray,
    cfg: CascadeSettings,
    out: Path,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """Embed the rows of the uncertain candidate pairs with ``cfg.model`` and rescore every
    pair with the merged title cosines.

    Args:
        cat: the catalog; has_text: ``(n,)`` bool rows with a title.
        a, b: ``(p,)`` int64 candidate pairs; signals: their first-tier signals (with
            ``cos_embedding`` and ``text_score``) and ``(p,)`` float32 score; probability:
            ``(p,)`` float32 first-tier match probabilities.
        cfg: the second tier; out: the run directory.

    Returns:
        ``(signals, score, info)``: the pairs' signals and score with the merged cosines (as
        given when nothing is uncertain), and what the manifest records of the cascade.

    Raises:
        CatalogError, ModelError, RunDirError: from embedding (an unknown model, say).
        EclipError: a bad band or row cap.
    """
    info: dict[str, Any] = {"model": cfg.model, "band": cfg.band, "max_rows": cfg.max_rows, "runtime": cfg.runtime}
    if "cos_embedding" not in signals or not len(a):
        return signals, score, {**info, "skipped": "no text signal"}
    picked = uncertain_rows(a, b, probability, cfg.band, cfg.max_rows)
    rows = picked.rows[has_text[picked.rows]]
    info |= {"uncertain_pairs": picked.pairs, "rows": int(len(rows)), "row_share": round(len(rows) / len(cat), 4)}
    info["capped"] = picked.capped
    if len(rows) < 2:
        return signals, score, {**info, "skipped": "fewer than 2 uncertain rows"}
    console.print(
        f"cascade: {picked.pairs:,} uncertain pair(s) (match probability in ({cfg.band:g}, {1 - cfg.band:g})); "
        f"embedding their {len(rows):,} row(s) ({len(rows) / len(cat):.1%} of the catalog) with {cfg.model}"
    )
    folder = out / "cascade"
    texts = [cat.texts[i] for i in rows.tolist()]
    write_parquet(pl.DataFrame({"id": [cat.ids[i] for i in rows.tolist()], "text": texts}), folder / "rows.parquet")
    t0 = time.perf_counter()
    ecfg = EmbedConfig(
        model=cfg.model,
        text_cols=["text"],
        runtime=cfg.runtime,
        settings=EmbedSettings(batch_size=cfg.batch_size, workers=cfg.workers),
        overwrite=True,  # the folder is this run's: another --cascade model replaces it
    )
    embed(folder / "rows.parquet", folder / "embeddings", ecfg)
    emb = load_embeddings(folder / "embeddings")
    info["embed_s"] = round(time.perf_counter() - t0, 1)
    info["embedding_model"] = emb.manifest.get("model")
    info["reused_rows"] = emb.manifest.get("reused_rows")
    position = np.full(len(cat), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    both = (position[a] >= 0) & (position[b] >= 0)
    second = np.full(len(a), np.nan, dtype=np.float32)
    present = np.ones(len(rows), dtype=bool)
    second[both] = cosine_pairs(emb.text, position[a[both]], position[b[both]], present)
    merged = merge_cosines(signals["cos_embedding"], second)
    info |= {"refined_pairs": int(merged.refined.sum()), "calibration_pairs": merged.calibration_pairs}
    new_signals, score = with_embedding_cosines(signals, merged.cosines, cfg.weights, cfg.thresholds)
    return new_signals, score, info
