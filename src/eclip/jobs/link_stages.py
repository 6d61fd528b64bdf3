"""The search and scoring stages of ``eclip link``, for every signal ``dedupe`` has.

Each enabled signal proposes cross pairs only (a row of LEFT with a row of RIGHT): the kNN
of the smaller side in the larger side's index, per embedding modality (text, image,
fused); model-code blocks across the sides; pHash neighbours across the sides. Every pair is
then scored on every enabled signal exactly as ``dedupe`` scores its pairs
(:func:`eclip.matcher.pair_scoring.score_candidates` over the rows of both sides, LEFT's
first), so a link's score means what a dedupe pair's score means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import Catalog
from eclip.encoders import Embeddings
from eclip.errors import EclipError, RunDirError
from eclip.index import cached_index, index_info
from eclip.index.binary import hamming_pairs
from eclip.jobs.dedupe_stages import PairSettings
from eclip.matcher import SIGNALS, ModalityThresholds, code_block_pairs
from eclip.matcher.pair_scoring import PairInputs, score_candidates
from eclip.rundir import fingerprint

#: The embedding modalities whose kNN proposes cross pairs.
MODALITIES = ("text", "image", "fused")


@dataclass
class Side:
    """One catalog of a link: its rows, embeddings, and per signal the rows that have it.

    Attributes:
        name: ``LEFT`` or ``RIGHT`` (as messages name it). flag: ``left`` or ``right``
            (the prefix of its options).
        cat, emb: the catalog and its embeddings (same rows, same order).
        masks: signal -> ``(n,)`` bool: ``text`` rows with a non-empty embedded title,
            ``image`` rows with a decoded image, ``fused`` rows with either, ``phash`` rows
            with an image's pHash.
    """

    name: str
    flag: str
    cat: Catalog
    emb: Embeddings
    masks: dict[str, np.ndarray]

    @classmethod
    def of(cls, flag: str, cat: Catalog, emb: Embeddings) -> Side:
        has_text = emb.has_text & np.array([bool(t) for t in cat.texts], dtype=bool)
        masks = {
            "text": has_text,
            "image": emb.has_image,
            "fused": emb.has_text | emb.has_image,
            "phash": emb.has_image,
        }
        return cls(flag.upper(), flag, cat, emb, masks)

    def has(self) -> list[str]:
        """The signals these embeddings can give: text, and image and fused with image
        vectors, phash with pHashes."""
        return (
            ["text"]
            + (["image", "fused"] if self.emb.image is not None else [])
            + (["phash"] if self.emb.phash is not None else [])
        )

    def usable(self, signals_on: tuple[str, ...]) -> np.ndarray:
        """``(n,)`` bool: the rows some enabled signal can link."""
        out = np.zeros(len(self.cat), dtype=bool)
        for s in signals_on:
            out |= self.masks[s]
        return out


def check_signals(requested: tuple[str, ...] | None, left: Side, right: Side) -> tuple[str, ...]:
    """The enabled signals: ``requested``, or (``None``) every signal both sides have.

    Raises:
        EclipError: an unknown signal, an empty list, or a signal a side lacks, in one line
            saying which side and which option gives it.
    """
    both = [s for s in left.has() if s in right.has()]
    if requested is None:
        return tuple(both)
    unknown = [s for s in requested if s not in SIGNALS]
    if unknown:
        raise EclipError(f"--signals: unknown signal(s) {', '.join(unknown)}; choose among {', '.join(SIGNALS)}.")
    if not requested:
        raise EclipError(f"--signals is empty; choose among {', '.join(both)}.")
    for s in requested:
        lacking = [side for side in (left, right) if s not in side.has()]
        if not lacking:
            continue
        if s in ("image", "fused") and all(side.emb.manifest.get("settings", {}).get("image_col") for side in lacking):
            model = (left.emb.manifest.get("model") or {}).get("name")
            raise EclipError(
                f"--signals {s} needs image vectors, but the model {model!r} embeds text only: pass an open_clip "
                f"--model (openclip:ARCH[:TAG|:CKPT], or a folder of one), or leave {s} out of --signals."
            )
        names = " and ".join(side.name for side in lacking)
        flags = " and ".join(f"--{side.flag}-image-col" for side in lacking)
        raise EclipError(
            f"--signals {s} needs images on both sides, but {names} {'were' if len(lacking) > 1 else 'was'} "
            f"embedded without {'pHashes' if s == 'phash' else 'images'}: pass {flags}, or leave {s} out of --signals."
        )
    return tuple(requested)


def check_same_fusion(left: Side, right: Side) -> None:
    """Refuse fused vectors made with two image weights (their cosines mean nothing).

    Raises:
        RunDirError: the sides' ``image_weight`` differ.
    """
    wl, wr = (s.emb.manifest.get("settings", {}).get("image_weight") for s in (left, right))
    if wl != wr:
        raise RunDirError(
            f"the sides' fused vectors were made with image weights {wl} (LEFT) and {wr} (RIGHT); "
            "embed both with one --image-weight, or leave fused out of --signals."
        )


def cross_candidates(
    vl: np.ndarray, vr: np.ndarray, ok_l: np.ndarray, ok_r: np.ndarray, key: str, cfg: PairSettings, folder: Path
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


def _vectors(emb: Embeddings, modality: str) -> np.ndarray:
    arr = {"text": emb.text, "image": emb.image, "fused": emb.fused if modality == "fused" else None}[modality]
    assert arr is not None  # check_signals enabled only the modalities both sides have
    return arr


def propose_cross(
    left: Side,
    right: Side,
    signals_on: tuple[str, ...],
    codes: list[frozenset[str]] | None,
    cfg: PairSettings,
    out: Path,
) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Every enabled signal's cross pairs, as ``a`` (a LEFT row) < ``b`` (``n_left`` + a
    RIGHT row) with their ``rank`` where a kNN ranked them.

    Returns:
        ``(lists, index info)``: source name -> pairs (the ``text`` kNN, ``code`` blocks, the
        ``image`` and ``fused`` kNN, ``phash`` neighbours), and per signal its index's
        description.
    """
    nl = len(left.cat)
    lists: dict[str, pl.DataFrame] = {}
    info: dict[str, Any] = {}
    for s in MODALITIES:
        if s not in signals_on:
            continue
        ml, mr = left.masks[s], right.masks[s]
        key = fingerprint(left.emb.key, right.emb.key, s, ml.tolist(), mr.tolist())
        folder = out / "index" / s
        pairs, info[s] = cross_candidates(_vectors(left.emb, s), _vectors(right.emb, s), ml, mr, key, cfg, folder)
        lists[s] = pairs.select(pl.col("l").alias("a"), (pl.col("r") + nl).alias("b"), "rank")
    if codes is not None:
        usable = np.concatenate([left.masks["text"], right.masks["text"]])
        blocks = code_block_pairs([c if usable[i] else frozenset() for i, c in enumerate(codes)], cfg.max_code_block)
        lists["code"] = blocks.filter((pl.col("a") < nl) & (pl.col("b") >= nl))  # across the sides only
    if "phash" in signals_on:
        rows = np.flatnonzero(np.concatenate([left.masks["phash"], right.masks["phash"]]))
        assert left.emb.phash is not None and right.emb.phash is not None  # check_signals
        near = hamming_pairs(np.vstack([left.emb.phash, right.emb.phash])[rows], cfg.phash_max_distance)
        a, b = rows[near.a], rows[near.b]  # rows is sorted, so a < b
        cross = (a < nl) & (b >= nl)
        lists["phash"] = pl.DataFrame({"a": a[cross], "b": b[cross]})
        info["phash"] = {
            "kind": "IndexBinaryFlat range search",
            "searched": "both sides at once; only cross pairs kept",
            "bits": 64,
            "max_distance": cfg.phash_max_distance,
            "rows": int(len(rows)),
            "pairs": int(cross.sum()),
            "placeholder_rows": int(len(near.crowded_rows)),
        }
    return lists, info


def score_cross(
    l: np.ndarray,
    r: np.ndarray,
    left: Side,
    right: Side,
    signals_on: tuple[str, ...],
    codes: list[frozenset[str]] | None,
    tfidf: Any,
    attrs: dict[str, Any],
    cfg: PairSettings,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every enabled signal of the cross pairs ``(l[i], r[i])`` (row positions in each side)
    and their score, as :func:`eclip.matcher.pair_scoring.score_candidates` scores a dedupe
    pair. ``attrs``: ``quantities``, ``brands``, ``prices`` over both sides' rows (LEFT's
    first), each present or not.

    Returns:
        ``(signals, score)``: signal name -> ``(p,)`` float32, and the ``(p,)`` float32
        score.
    """
    nl = len(left.cat)

    def both(modality: str) -> np.ndarray | None:
        return (
            np.vstack([_vectors(left.emb, modality), _vectors(right.emb, modality)]) if modality in signals_on else None
        )

    def mask(signal: str) -> np.ndarray:
        return np.concatenate([left.masks[signal], right.masks[signal]])

    phash = np.vstack([left.emb.phash, right.emb.phash]) if "phash" in signals_on else None  # type: ignore[list-item]
    text = both("text")
    inputs = PairInputs(
        signals_on,
        text if text is not None else np.zeros((nl + len(right.cat), 0), np.float32),
        both("image"),
        both("fused"),
        phash,
        mask("text"),
        mask("image"),
        mask("fused"),
        tfidf,
        codes,
        attrs.get("quantities"),
        attrs.get("brands"),
        attrs.get("prices"),
        cfg.weights,
        cfg.thresholds,
    )
    return score_candidates(l, nl + r, inputs)


def agreement(signals: dict[str, np.ndarray], t: ModalityThresholds) -> np.ndarray:
    """``(p,)`` float32: how much the signals agree on each pair, the sum of each signal's
    score shifted as :func:`eclip.matcher.combine_modalities` shifts it (its own threshold
    on ``t.text``; a signal a pair lacks adds 0). Where the final score, the best of them,
    ties (two listings with one title, one of them with the same photo), the pair more
    signals vouch for has the larger sum."""
    n = len(next(iter(signals.values()))) if signals else 0
    out = np.zeros(n, dtype=np.float32)
    shifted = {
        "text_score": lambda v: v,
        "cos_image": lambda v: v - t.image + t.text,
        "cos_fused": lambda v: v - t.fused + t.text,
        "phash_distance": lambda v: t.text + (t.phash - v) / 64.0,
    }
    for name, shift in shifted.items():
        if name in signals:
            out += np.nan_to_num(shift(np.asarray(signals[name], dtype=np.float32)), nan=0.0)
    return out
