"""The search and scoring stages of ``eclip dedupe``, in an order that bounds memory.

At a million rows the large arrays are the embeddings (``n x d`` float32: 1 GiB at 256-d),
the faiss index, the character n-gram TF-IDF matrix (about 0.9 GiB) and the candidate pairs.
They are never all held at once:

1. the kNN self-join of each modality builds its index, searches, and lets it go;
2. the title-embedding cosine of every candidate pair is computed, after which the title
   vectors are released (unless Ray scores the pairs: its tasks read the vectors);
3. only then is the TF-IDF matrix fitted (unless a catalog small enough for n-gram neighbours
   needed it during the search), and the pairs are scored.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from eclip.catalog import Catalog
from eclip.distributed import RayRunner
from eclip.encoders import CharNgramTfidf, Embeddings
from eclip.index import cached_self_join
from eclip.index.binary import MAX_PHOTO_BLOCK, hamming_pairs
from eclip.index.sparse_knn import tfidf_knn_table
from eclip.jobs.ray_steps import score_on_ray, self_join_on_ray
from eclip.matcher import ModalityThresholds, ScoreWeights, code_block_pairs, knn_pairs
from eclip.matcher.pair_scoring import PairInputs, score_candidates
from eclip.matcher.signals import cosine_pairs
from eclip.progress import console
from eclip.rundir import fingerprint


class PairSettings(Protocol):
    """What proposing and scoring pairs read of a job's config (read-only): shared by
    ``dedupe`` and ``link`` (:mod:`eclip.jobs.link_stages`)."""

    @property
    def k(self) -> int: ...

    @property
    def flat_max(self) -> int: ...

    @property
    def max_code_block(self) -> int: ...

    @property
    def phash_max_distance(self) -> int: ...

    @property
    def weights(self) -> ScoreWeights: ...

    @property
    def thresholds(self) -> ModalityThresholds: ...


class SearchSettings(PairSettings, Protocol):
    """What the stages read of a :class:`eclip.jobs.dedupe.DedupeConfig` (read-only)."""

    @property
    def ray(self) -> RayRunner | None: ...

    @property
    def tfidf_knn_max_rows(self) -> int: ...

    @property
    def phash_col(self) -> str | None: ...


def knn_candidates(
    vectors: np.ndarray, rows: np.ndarray, key: str, cfg: SearchSettings, folder: Path
) -> tuple[pl.DataFrame, dict]:
    """kNN pairs among ``rows`` of ``vectors`` (``(n, d)`` float32, L2-normalised; ``rows``
    sorted int64 positions), as catalog row positions ``a < b`` with their ``rank``, and the
    index's description. The index is cached in ``folder`` and not held after the call."""
    join = partial(self_join_on_ray, cfg.ray) if cfg.ray is not None else None
    _, nn, info = cached_self_join(vectors, rows, key, cfg.k, cfg.flat_max, folder, join)
    pairs = knn_pairs(nn)  # positions within `rows`; rows is sorted, so a < b still holds
    return pl.DataFrame(
        {"a": rows[pairs["a"].to_numpy()], "b": rows[pairs["b"].to_numpy()], "rank": pairs["rank"]}
    ), info


def propose_candidates(
    cat: Catalog,
    emb: Embeddings,
    masks: dict[str, np.ndarray],
    signals_on: tuple[str, ...],
    codes: list[frozenset[str]] | None,
    phash: np.ndarray | None,
    cfg: SearchSettings,
    out: Path,
) -> tuple[dict[str, pl.DataFrame], dict[str, Any], Any]:
    """Every signal's candidate pairs: kNN per embedding modality, model-code blocks,
    character n-gram neighbours (catalogs up to ``cfg.tfidf_knn_max_rows`` rows with text),
    pHash neighbours.

    Returns:
        ``(lists, index_info, tfidf)``: source name -> pairs (``a``, ``b`` row positions), the
        indexes' descriptions, and the fitted TF-IDF matrix when the n-gram search needed it
        (else ``None``: :func:`score_all` fits it once the vectors are released).
    """
    lists: dict[str, pl.DataFrame] = {}
    index_info: dict[str, Any] = {}
    has_text = masks["text"]
    for s_ in ("text", "image", "fused"):
        rows = np.flatnonzero(masks[s_])
        if s_ in signals_on and len(rows) >= 2:
            vectors = emb.vectors(s_)[0]
            assert vectors is not None  # only the modalities these embeddings have are on
            lists[s_], index_info[s_] = knn_candidates(
                vectors, rows, fingerprint(emb.key, s_, rows.tolist()), cfg, out / "index" / s_
            )
    tfidf = None
    if codes is not None:
        lists["code"] = code_block_pairs(
            [c if has_text[i] else frozenset() for i, c in enumerate(codes)], cfg.max_code_block
        )
        text_rows = np.flatnonzero(has_text)
        if 2 <= len(text_rows) <= cfg.tfidf_knn_max_rows:
            tfidf = CharNgramTfidf().fit_transform(cat.texts)
            lists["ngram"] = knn_pairs(tfidf_knn_table(tfidf, text_rows, cfg.k)[1], text_rows)
            index_info["ngram"] = {
                "kind": "exact sparse top-k over character n-gram TF-IDF (sparse_dot_topn)",
                "rows": int(len(text_rows)),
                "k": cfg.k,
            }
        elif len(text_rows) >= 2:
            console.print(
                f"[yellow]{len(text_rows):,} rows with text: more than --tfidf-knn-max-rows "
                f"({cfg.tfidf_knn_max_rows:,}), so character n-gram neighbours are not proposed "
                "(only the embedding's and the model codes').[/]"
            )
            index_info["ngram"] = {"skipped": f"{len(text_rows):,} rows > {cfg.tfidf_knn_max_rows:,}"}
    if "phash" in signals_on:
        assert phash is not None  # phash is offered only when the embeddings or a column have it
        rows = np.flatnonzero(masks["phash"])
        near = hamming_pairs(phash[rows], cfg.phash_max_distance)
        lists["phash"] = pl.DataFrame({"a": rows[near.a], "b": rows[near.b]})
        if len(near.crowded_rows):
            console.print(
                f"[yellow]{len(near.crowded_rows):,} row(s) share their photo with more than {MAX_PHOTO_BLOCK} others (a placeholder image?), "
                f"e.g. {cat.ids[rows[near.crowded_rows[0]]]!r}; their photo is not used to propose matches.[/]"
            )
        index_info["phash"] = {
            "kind": "IndexBinaryFlat range search",
            "from": f"column {cfg.phash_col}" if cfg.phash_col else "images",
            "bits": 64,
            "max_distance": cfg.phash_max_distance,
            "rows": int(len(rows)),
            "pairs": int(len(near.a)),
            "placeholder_rows": int(len(near.crowded_rows)),
            "max_photo_block": MAX_PHOTO_BLOCK,
        }
    return lists, index_info, tfidf


def score_all(
    a: np.ndarray,
    b: np.ndarray,
    cat: Catalog,
    emb: Embeddings,
    masks: dict[str, np.ndarray],
    signals_on: tuple[str, ...],
    codes: list[frozenset[str]] | None,
    phash: np.ndarray | None,
    attrs: dict[str, Any],
    tfidf: Any,
    cfg: SearchSettings,
    cosines: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, Any]:
    """Every signal of the candidate pairs ``(a, b)`` (``(p,)`` int64) and their score
    (:func:`eclip.matcher.pair_scoring.score_candidates`), in bounded memory (this module's
    docstring). ``emb.text`` is released (an empty ``(0, d)`` array) when its cosines are
    all that is read of it. Same numbers as scoring with everything in memory.

    ``cosines``: the pairs' ``(p,)`` float32 title cosines when they come from elsewhere (a
    second model's, :mod:`eclip.jobs.dedupe_cascade`); then ``emb.text`` is not read.

    Returns:
        ``(signals, score, tfidf)``: signal name -> ``(p,)`` float32, the ``(p,)`` float32
        score, and the TF-IDF matrix used (``None`` without the lexical signals), for a
        later call to reuse.
    """
    cos_text = cosines
    if cos_text is None and cfg.ray is None and "text" in signals_on and len(a):
        cos_text = cosine_pairs(emb.text, a, b, masks["text"])  # NaN where a row has no text
        emb.text = np.zeros((0, emb.text.shape[1]), np.float32)  # the largest array: let it go
    if tfidf is None and codes is not None:
        tfidf = CharNgramTfidf().fit_transform(cat.texts)
    inputs = PairInputs(
        signals_on,
        emb.text,
        emb.image,
        emb.fused if "fused" in signals_on else None,
        phash,
        masks["text"],
        masks["phash"],
        masks["fused"],
        tfidf,
        codes,
        attrs.get("quantities"),
        attrs.get("brands"),
        attrs.get("prices"),
        cfg.weights,
        cfg.thresholds,
        cos_text,
    )
    if cfg.ray is not None and len(a) and cosines is None:
        return (*score_on_ray(cfg.ray, a, b, inputs), tfidf)
    return (*score_candidates(a, b, inputs), tfidf)
