"""``eclip dedupe --cascade MODEL``: a second, stronger text model for the pairs the first left
uncertain (:mod:`eclip.matcher.cascade`).

The second model's vectors serve twice: every candidate pair between two refined rows gets its
cosine, and a kNN self-join among the refined rows proposes the pairs the first model did not
(on WDC Products' 8,833 refined rows: candidate recall 0.649 -> 0.695, where MiniLM alone
proposes 0.677). The new pairs are scored like every other candidate, with the second
model's cosines.

The rows to refine are written to ``<run>/cascade/rows.parquet`` (id and the catalog's joined
text) and embedded by the ordinary ``embed`` job into ``<run>/cascade/embeddings``, so a run
killed while the transformer works resumes from its finished shards (a rerun picks the same
rows: the first tier's embeddings, index and scores are cached or deterministic).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import Catalog
from eclip.checks import Runtime
from eclip.encoders import EmbedSettings, load_embeddings
from eclip.jobs.dedupe_stages import SearchSettings, knn_candidates
from eclip.jobs.embed import EmbedConfig, embed
from eclip.matcher import ModalityThresholds, ScoreWeights
from eclip.matcher.cascade import merge_cosines, uncertain_rows
from eclip.matcher.pair_scoring import with_embedding_cosines
from eclip.matcher.signals import cosine_pairs
from eclip.progress import console
from eclip.rundir import fingerprint, write_parquet

#: Scores new candidate pairs ``(a, b)`` given their ``(p,)`` float32 title cosines:
#: ``(signals, score)`` as :func:`eclip.jobs.dedupe_stages.score_all` gives them.
ScoreNew = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[dict[str, np.ndarray], np.ndarray]]


@dataclass
class Refined:
    """The candidate pairs after the second tier: the first tier's, then the new ones.

    Attributes:
        a, b: ``(p + q,)`` int64 row positions; signals: name -> ``(p + q,)`` float32;
        score: ``(p + q,)`` float32; new_rank: ``(q,)`` uint32 kNN rank of the ``q`` new
        pairs; info: what the manifest records of the cascade.
    """

    a: np.ndarray
    b: np.ndarray
    signals: dict[str, np.ndarray]
    score: np.ndarray
    new_rank: np.ndarray
    info: dict[str, Any]


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
    knn: bool = True


def refine_uncertain(
    cat: Catalog,
    has_text: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    signals: dict[str, np.ndarray],
    score: np.ndarray,
    probability: np.ndarray,
    cfg: CascadeSettings,
    search: SearchSettings,
    score_new: ScoreNew,
    out: Path,
) -> Refined:
    """Embed the rows of the uncertain candidate pairs with ``cfg.model``, rescore every pair
    with the merged title cosines, and (``cfg.knn``) add the pairs its kNN self-join among
    those rows finds.

    Args:
        cat: the catalog; has_text: ``(n,)`` bool rows with a title.
        a, b: ``(p,)`` int64 candidate pairs; signals: their first-tier signals (with
            ``cos_embedding`` and ``text_score``) and ``(p,)`` float32 score; probability:
            ``(p,)`` float32 first-tier match probabilities.
        cfg: the second tier; search: ``k`` and the index settings of the self-join;
            score_new: scores the new pairs; out: the run directory.

    Returns:
        The pairs, their signals and scores with the merged cosines (as given when nothing is
        uncertain), and what the manifest records of the cascade.

    Raises:
        CatalogError, ModelError, RunDirError: from embedding (an unknown model, say).
        EclipError: a bad band or row cap.
    """
    info: dict[str, Any] = {"model": cfg.model, "band": cfg.band, "max_rows": cfg.max_rows, "runtime": cfg.runtime}

    def unchanged(why: str) -> Refined:
        return Refined(a, b, signals, score, np.zeros(0, np.uint32), {**info, "skipped": why})

    if "cos_embedding" not in signals or not len(a):
        return unchanged("no text signal")
    picked = uncertain_rows(a, b, probability, cfg.band, cfg.max_rows)
    rows = picked.rows[has_text[picked.rows]]
    info |= {"uncertain_pairs": picked.pairs, "rows": int(len(rows)), "row_share": round(len(rows) / len(cat), 4)}
    info["capped"] = picked.capped
    if len(rows) < 2:
        return unchanged("fewer than 2 uncertain rows")
    console.print(
        f"cascade: {picked.pairs:,} uncertain pair(s) (match probability in ({cfg.band:g}, {1 - cfg.band:g})); "
        f"embedding their {len(rows):,} row(s) ({len(rows) / len(cat):.1%} of the catalog) with {cfg.model}"
    )
    vectors = _embed_rows(cat, rows, cfg, out / "cascade", info)
    position = np.full(len(cat), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    both = (position[a] >= 0) & (position[b] >= 0)
    second = np.full(len(a), np.nan, dtype=np.float32)
    present = np.ones(len(rows), dtype=bool)
    second[both] = cosine_pairs(vectors, position[a[both]], position[b[both]], present)
    merged = merge_cosines(signals["cos_embedding"], second)
    info |= {"refined_pairs": int(merged.refined.sum()), "calibration_pairs": merged.calibration_pairs}
    signals, score = with_embedding_cosines(signals, merged.cosines, cfg.weights, cfg.thresholds)
    if not cfg.knn:
        return Refined(a, b, signals, score, np.zeros(0, np.uint32), info)
    local = np.arange(len(rows), dtype=np.int64)
    key = fingerprint(info.get("embedding_key"), "cascade", rows.tolist())
    knn, info["index"] = knn_candidates(vectors, local, key, search, out / "cascade" / "index")
    na, nb = knn["a"].to_numpy(), knn["b"].to_numpy()  # positions in `rows`, a < b
    n = np.int64(len(cat))
    fresh = ~np.isin(rows[na] * n + rows[nb], a * n + b)
    na, nb, rank = na[fresh], nb[fresh], knn["rank"].to_numpy()[fresh].astype(np.uint32)
    info["new_pairs"] = int(len(na))
    if not len(na):
        return Refined(a, b, signals, score, rank, info)
    cos = cosine_pairs(vectors, na, nb, present)
    new_signals, new_score = score_new(rows[na], rows[nb], cos)
    joined = {k: np.concatenate([v, new_signals.get(k, np.full(len(na), np.nan, v.dtype))]) for k, v in signals.items()}
    return Refined(
        np.concatenate([a, rows[na]]),
        np.concatenate([b, rows[nb]]),
        joined,
        np.concatenate([score, new_score]),
        rank,
        info,
    )


def _embed_rows(cat: Catalog, rows: np.ndarray, cfg: CascadeSettings, folder: Path, info: dict[str, Any]) -> np.ndarray:
    """``(len(rows), d)`` float32 L2-normalised vectors of ``rows``' texts by ``cfg.model``,
    made by the resumable embed job in ``folder``; notes its time and model in ``info``."""
    t0 = time.perf_counter()
    write_parquet(
        pl.DataFrame({"id": [cat.ids[i] for i in rows.tolist()], "text": [cat.texts[i] for i in rows.tolist()]}),
        folder / "rows.parquet",
    )
    ecfg = EmbedConfig(
        model=cfg.model,
        text_cols=["text"],
        runtime=cfg.runtime,
        settings=EmbedSettings(batch_size=cfg.batch_size, workers=cfg.workers),
        overwrite=True,  # the folder is this run's: another --cascade model replaces it
    )
    embed(folder / "rows.parquet", folder / "embeddings", ecfg)
    emb = load_embeddings(folder / "embeddings")
    info |= {
        "embed_s": round(time.perf_counter() - t0, 1),
        "embedding_model": emb.manifest.get("model"),
        "embedding_key": emb.key,
        "reused_rows": emb.manifest.get("reused_rows"),
    }
    return emb.text
