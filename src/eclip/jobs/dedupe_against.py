"""``eclip dedupe --against INDEX``: match only a catalog's new listings against an index
directory and its match groups, keeping existing group ids."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import load_catalog
from eclip.encoders import (
    DEFAULT_MODEL,
    CharNgramTfidf,
    extract_codes,
)
from eclip.errors import EclipError, RunDirError
from eclip.index import open_index_dir
from eclip.jobs.dedupe import (
    DedupeConfig,
    dedupe_embeddings,
    start_dedupe_run,
)
from eclip.jobs.dedupe_stages import knn_candidates
from eclip.jobs.run import created, versions, write_manifest
from eclip.matcher import (
    cosine_pairs,
    incremental_groups_frame,
    score_pairs,
)
from eclip.matcher.incremental import assign_incremental
from eclip.rundir import MANIFEST, fingerprint, read_json, write_parquet


def _refuse_ignored_against_options(cfg: DedupeConfig, index: str | Path) -> None:
    """Refuse the settings :func:`dedupe_against` cannot honour, rather than ignore them.

    Raises:
        EclipError: one of them is set; the message names it and what to do instead.
    """
    default = DedupeConfig()
    ignored = {
        "--review": cfg.review is not None,
        "--signals": cfg.signals is not None,
        "--phash-max-distance": cfg.phash_max_distance != default.phash_max_distance,
        "--phash-col": cfg.phash_col is not None,
        "--match-model": cfg.match_model is not None,
        "--ray": cfg.ray is not None,
        "--embeddings": cfg.embeddings is not None,
    }
    named = [flag for flag, is_set in ignored.items() if is_set]
    if named:
        raise EclipError(
            f"--against matches new rows on the index's own vectors and does not use {', '.join(named)}; "
            "drop them, or run `eclip dedupe` on the whole catalog instead."
        )
    built_with = read_json(Path(index) / MANIFEST).get("model") or {}
    if cfg.model != default.model and built_with:
        from eclip.encoders import load_encoder

        asked = load_encoder(cfg.model, runtime=cfg.runtime).describe()
        if (asked.get("name"), asked.get("weights")) != (built_with.get("name"), built_with.get("weights")):
            raise EclipError(
                f"{index} was built with {built_with.get('name')}, not {cfg.model} ({asked.get('name')}); "
                "drop --model (the index's own model is used) or rebuild the index with that model."
            )


def dedupe_against(
    catalog: str | Path, index: str | Path, out: str | Path, cfg: DedupeConfig | None = None
) -> dict[str, Any]:
    """Match only a catalog's new listings against an index directory and its match groups.

    The rows are embedded with the index's model, searched in the index (top ``cfg.k``) and
    among themselves, scored like :func:`dedupe` (embedding cosine, plus the lexical signals
    when the index keeps titles and ``cfg.lexical``), and assigned by
    :func:`eclip.matcher.incremental.assign_incremental`: existing group ids never change,
    new groups get ids after the largest existing one. Rows whose id is already indexed keep
    their group (status ``already_indexed``). An index built without ``--groups`` counts each
    indexed row as its own group, numbered by its index row. Append the rows afterwards with
    ``eclip index add INDEX CATALOG --groups OUT/groups.parquet``.

    Writes ``groups.parquet`` (id, group_id, status, matched_to, score, also_matches; every
    input row once), ``pairs.parquet`` (id_a, id_b, against, score, cos_embedding, matched)
    and ``manifest.json``.

    Raises:
        RunDirError: not an index directory, or the embeddings are of another model.
        CatalogError, ModelError: bad input.
        EclipError: an option it cannot honour (:func:`_refuse_ignored_against_options`).
    """
    _refuse_ignored_against_options(cfg or DedupeConfig(), index)
    cfg, out, timer = start_dedupe_run(cfg, out)
    idx = open_index_dir(index)
    vectors = idx.manifest.get("vectors", "text")
    with timer("read"):
        cat = load_catalog(catalog, cfg.id_col, cfg.text_cols, cfg.image_col, cfg.sep, cfg.encoding)
    n = len(cat)
    model = (idx.manifest.get("model") or {}).get("name", DEFAULT_MODEL)
    emb = dedupe_embeddings(cat, replace(cfg, model=model), out, timer)
    arr, usable = emb.vectors(vectors)
    if arr is None:
        raise RunDirError(f"the index holds {vectors!r} vectors; embed the new rows' images too (--image-col).")
    idx.check_compatible(emb.manifest.get("model"), arr.shape[1])
    if vectors == "text":
        usable = usable & np.array([bool(t) for t in cat.texts])
    position = {i: r for r, i in enumerate(idx.ids)}
    indexed = np.array([i in position for i in cat.ids], dtype=bool)
    kept_groups = idx.groups()
    old_groups = (
        kept_groups["group_id"].to_numpy() if kept_groups is not None else np.arange(len(idx.ids), dtype=np.int64)
    )
    fresh = np.flatnonzero(~indexed)  # subset position -> catalog row
    rows = np.flatnonzero(usable & ~indexed)
    with timer("search"):
        scores, nn = idx.search(arr[rows], cfg.k, emb.manifest.get("model"))
        keep = nn >= 0
        q_row = np.repeat(rows, cfg.k).reshape(len(rows), cfg.k)[keep]
        old_row, old_cos = nn[keep], scores[keep]
        within, _ = (
            knn_candidates(arr, rows, fingerprint(emb.key, "against", rows.tolist()), cfg, out / "index" / vectors)
            if len(rows) >= 2
            else (pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Int64, "b": pl.Int64}), {})
        )
        a, b = within["a"].to_numpy(), within["b"].to_numpy()
    with timer("score"):
        threshold = {"text": cfg.thresholds.text, "image": cfg.image_threshold, "fused": cfg.fused_threshold}[vectors]
        method = "mutual" if cfg.method == "auto" else cfg.method  # an index's groups are kept as they are
        lexical = vectors == "text" and cfg.lexical and idx.texts is not None
        if lexical:
            assert idx.texts is not None  # lexical implies the index kept its texts
            old_u, old_pos = np.unique(old_row, return_inverse=True)
            texts = cat.texts + [idx.texts[o] for o in old_u]
            tfidf = CharNgramTfidf().fit_transform(texts)
            codes = [extract_codes(t) for t in texts]
            table = np.vstack([arr, np.zeros((len(old_u), arr.shape[1]), np.float32)])
            within_signals = score_pairs(a, b, table, tfidf, codes, cfg.weights)
            s_within, cos_within = within_signals["score"], within_signals["cos_embedding"]
            s_old = score_pairs(q_row, n + old_pos, table, tfidf, codes, cfg.weights, cos=old_cos)["score"]
        else:
            cos_within = cosine_pairs(arr, a, b, usable)
            s_within, s_old = cos_within, old_cos
    with timer("group"):
        sub = np.full(n, -1, dtype=np.int64)
        sub[fresh] = np.arange(len(fresh))
        inc = assign_incremental(
            len(fresh), sub[a], sub[b], s_within, sub[q_row], old_row, s_old, old_groups, threshold, method
        )
    with timer("write"):
        ids = np.array(cat.ids, dtype=object)
        old_ids = np.array(idx.ids, dtype=object)
        groups = incremental_groups_frame(
            cat.ids, indexed, old_groups[[position[i] for i in ids[indexed]]], usable, inc, idx.ids
        )
        write_parquet(groups, out / "groups.parquet")
        pairs = (
            pl.concat(
                [
                    pl.DataFrame(
                        {
                            "id_a": ids[q_row].tolist(),
                            "id_b": old_ids[old_row].tolist(),
                            "against": "index",
                            "score": np.asarray(s_old, np.float32),
                            "cos_embedding": old_cos,
                        },
                        schema_overrides={"id_a": pl.String, "id_b": pl.String},
                    ),
                    pl.DataFrame(
                        {
                            "id_a": ids[a].tolist(),
                            "id_b": ids[b].tolist(),
                            "against": "new",
                            "score": np.asarray(s_within, np.float32),
                            "cos_embedding": cos_within,
                        },
                        schema_overrides={"id_a": pl.String, "id_b": pl.String},
                    ),
                ],
                how="vertical_relaxed",
            )
            .with_columns((pl.col("score") >= threshold).alias("matched"))
            .sort("score", descending=True)
        )
        write_parquet(pairs, out / "pairs.parquet")
    status = groups["status"].value_counts()
    counts = dict.fromkeys(("already_indexed", "joined", "new_group", "singleton", "unmatchable"), 0) | dict(
        zip(status["status"].to_list(), status["count"].to_list())
    )
    manifest = {
        "job": "dedupe_against",
        "created": created(),
        "inputs": {
            "catalog": str(Path(catalog).resolve()),
            "id_col": cat.id_col,
            "text_cols": list(cat.text_cols),
            "image_col": cat.image_col,
        },
        "index": {
            "dir": str(Path(index).resolve()),
            "n": len(idx.ids),
            "factory": idx.manifest.get("factory"),
            "vectors": vectors,
            "kept_groups": kept_groups is not None,
            "kept_titles": idx.texts is not None,
        },
        "model": emb.manifest.get("model"),
        "matching": {
            "k": cfg.k,
            "method": method,
            "threshold": threshold,
            "lexical": lexical,
            "weights": asdict(cfg.weights),
        },
        "counts": {
            "rows": n,
            **counts,
            "rows_with_also_matches": sum(bool(x) for x in inc.also_matches),
            "new_group_ids": int(len(np.unique(inc.group_id[~inc.joined]))) if len(fresh) else 0,
        },
        "timings_s": timer.timings(),
        "outputs": {"groups": "groups.parquet", "pairs": "pairs.parquet"},
        "versions": versions(),
    }
    return write_manifest(manifest, out)
