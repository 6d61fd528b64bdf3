"""Index directories: ``eclip index build|add|merge|query|info``.

An index directory holds:

* ``trained.faiss`` + ``trained.json``: the empty trained index (coarse quantizer, PQ and
  refine codebooks) and what it was trained on. It is written once, exclusively, and every
  build, shard and add starts from a copy of it, so an interrupted build resumes without
  retraining and shards built on different machines fit together;
* the index (``index.faiss`` at first; ``index.N.faiss`` after the N-th ``add``), the row ->
  catalog id map (``ids*.parquet``) and optionally each id's match group (``groups*.parquet``);
* ``manifest.json``: the model and embeddings key, dimension, metric, faiss factory string,
  nprobe, the measured recall@k against exact search, bytes per vector, build stats, and the
  names of the current files. The manifest is written last and is the commit point: a kill in
  the middle of an ``add`` leaves the previous files and manifest in force.
* ``shards/I-of-N/``: the slices of a sharded build, until ``merge`` combines them.

Parameters come from :mod:`eclip.index.autotune`; GPUs are used through :mod:`eclip.index.gpu`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

from eclip.errors import RunDirError
from eclip.index.autotune import (
    FLAT_MAX,
    choose_factory,
    exact_topk,
    refine_stage,
    set_nprobe,
    tune_nprobe,
)
from eclip.index.gpu import num_gpus, searchable
from eclip.index.shards import build_shard, shard_metas, shard_rows
from eclip.index.trained import TRAINED, add_in_steps, file_digest, merge_into, trained_index
from eclip.progress import console
from eclip.rundir import MANIFEST, atomic_path, fault_point, read_json, write_json, write_parquet


@dataclass
class IndexDir:
    """An opened index directory: the faiss index (CPU), row ids and manifest."""

    index: faiss.Index
    ids: list[str]
    manifest: dict[str, Any]
    folder: Path
    texts: list[str] | None = None
    _search_copy: tuple = field(default=(), repr=False)

    def check_compatible(self, model: dict[str, Any] | None, dim: int) -> None:
        """Refuse vectors of another model or dimension.

        Raises:
            RunDirError: the dimension or the model (its name and weights) differ.
        """
        want = self.manifest.get("model") or {}
        if dim != self.manifest["dim"]:
            raise RunDirError(
                f"query vectors have dimension {dim}, the index {self.manifest['dim']} ({want.get('name')}); embed with the index's model."
            )
        if (
            model is not None
            and want
            and (model.get("name"), model.get("weights")) != (want.get("name"), want.get("weights"))
        ):
            raise RunDirError(
                f"vectors come from model {model.get('name')!r} but the index {self.folder} was built from {want.get('name')!r}; refusing to mix them."
            )

    def search(self, queries: np.ndarray, k: int, model: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of ``(q, d)`` float32 L2-normalised queries, on the GPUs when there are any.

        Returns:
            ``(scores, rows)``, both ``(q, k)``: float32 inner products (cosines), int64 index
            rows (``-1`` where fewer than k exist). ``ids[row]`` is the catalog id.

        Raises:
            RunDirError: the queries come from another model or dimension.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        self.check_compatible(model, q.shape[1])
        if not self._search_copy:
            self._search_copy = searchable(self.index)
        return self._search_copy[0].search(q, k)

    def groups(self) -> pl.DataFrame | None:
        """``id, group_id`` of every indexed row, when the index was given match groups."""
        name = self.manifest.get("files", {}).get("groups")
        return pl.read_parquet(self.folder / name) if name else None


def _write_index_files(
    out: Path, index: faiss.Index, ids: list[str], groups: pl.DataFrame | None, gen: int, texts: list[str] | None = None
) -> dict[str, str]:
    suffix = f".{gen}" if gen else ""
    files = {"index": f"index{suffix}.faiss", "ids": f"ids{suffix}.parquet"}
    with atomic_path(out / files["index"]) as tmp:
        faiss.write_index(index, str(tmp))
    table = {"id": list(ids)} | ({"text": list(texts)} if texts is not None else {})
    write_parquet(pl.DataFrame(table, schema={c: pl.String for c in table}), out / files["ids"])
    if groups is not None:
        files["groups"] = f"groups{suffix}.parquet"
        write_parquet(groups, out / files["groups"])
    return files


def _complete_groups(ids: list[str], groups: pl.DataFrame | None, start: int = 0) -> pl.DataFrame | None:
    """``id, group_id`` for every id: given groups, and a new group id (after the largest
    given, or ``start``) for each id the groups leave out."""
    if groups is None:
        return None
    frame = pl.DataFrame({"id": list(ids)}, schema={"id": pl.String})
    given = groups.select(pl.col("id").cast(pl.String), pl.col("group_id").cast(pl.Int64)).unique("id", keep="first")
    joined = frame.join(given, on="id", how="left", maintain_order="left")
    nxt = max(int(given["group_id"].max() or -1) + 1, start)  # type: ignore[arg-type]  # an Int64 column's max
    missing = joined["group_id"].is_null()
    fill = pl.Series(np.cumsum(missing.to_numpy()) - 1 + nxt, dtype=pl.Int64)
    return joined.with_columns(pl.when(missing).then(fill).otherwise(pl.col("group_id")).alias("group_id"))


def _finish(
    out: Path,
    index: faiss.Index,
    xb: np.ndarray,
    ids: list[str],
    trained: dict[str, Any],
    t0: float,
    model: dict[str, Any] | None,
    target_recall: float,
    k: int,
    k_factor: int,
    tune_queries: int,
    seed: int,
    groups: pl.DataFrame | None,
    extra: dict[str, Any] | None,
    texts: list[str] | None = None,
) -> dict[str, Any]:
    n, d = xb.shape
    refine = refine_stage(index)
    if refine is not None:
        refine.k_factor = k_factor
    q_ids = np.sort(np.random.default_rng(seed + 1).choice(n, min(tune_queries, n), replace=False))
    queries = np.ascontiguousarray(xb[q_ids], dtype=np.float32)
    with console.status(f"tuning nprobe for recall@{k} >= {target_recall} on {len(q_ids):,} queries"):
        nprobe, recall = tune_nprobe(index, queries, exact_topk(xb, queries, k), target_recall)
    files = _write_index_files(out, index, ids, _complete_groups(ids, groups), 0, texts)
    size = (out / files["index"]).stat().st_size
    manifest = {
        "job": "index",
        "model": model,
        "key": trained["key"],
        "n": n,
        "dim": d,
        "metric": "inner_product",
        "factory": trained["factory"],
        "nprobe": nprobe,
        "refine_k_factor": k_factor if refine is not None else None,
        f"recall@{k}": round(recall, 4),
        "target_recall": target_recall,
        "tune_queries": int(len(q_ids)),
        "train_vectors": trained.get("train_vectors"),
        "trained_digest": trained["digest"],
        "bytes": size,
        "bytes_per_vector": round(size / max(n, 1), 1),
        "fraction_of_float32": round(size / max(4 * d * n, 1), 4),
        "build_seconds": round(time.perf_counter() - t0, 2),
        "gpus": num_gpus(),
        "files": files,
        "adds": [],
        **(extra or {}),
    }
    write_json(manifest, out / MANIFEST)
    return manifest


def finished_build(out: Path, key: str, factory: str, n: int) -> dict[str, Any] | None:
    """The manifest of an index already built in ``out`` from these embeddings (``key``, ``n``
    rows) with ``factory`` and never added to since (said on screen), else ``None``."""
    done = read_json(out / MANIFEST)
    if (
        done.get("job") == "index"
        and (done.get("key"), done.get("factory"), done.get("n")) == (key, factory, n)
        and not done.get("adds")
    ):
        console.print(f"{out}: already built from these embeddings ({factory}); nothing to do.")
        return done
    return None


def build_index_dir(
    vectors: np.ndarray,
    ids: list[str],
    out: str | Path,
    model: dict[str, Any] | None = None,
    key: str = "",
    factory: str | None = None,
    max_memory: int | None = None,
    target_recall: float = 0.95,
    k: int = 10,
    k_factor: int = 10,
    tune_queries: int = 1000,
    seed: int = 0,
    flat_max: int = FLAT_MAX,
    opq: bool = False,
    shard: tuple[int, int] | None = None,
    groups: pl.DataFrame | None = None,
    texts: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build, tune and save an index directory over ``vectors`` (or one shard of it).

    Args:
        vectors: ``(n, d)`` float32, L2-normalised (inner product = cosine).
        ids: ``n`` catalog ids, row order.
        model, key: what made the vectors (from the embeddings manifest), checked at query.
        factory: a faiss factory string; ``None`` chooses one (:func:`choose_factory`).
        max_memory: bytes the index may take.
        target_recall: recall@k against exact search that nprobe tuning must reach.
        k_factor: a re-ranking store re-scores ``k * k_factor`` candidates.
        flat_max, opq: passed to :func:`choose_factory`.
        shard: ``(i, N)``: add only rows :func:`shard_rows` ``(i, N, n)`` to a copy of the
            shared trained index and write them to ``out/shards/i-of-N``; :func:`merge_index_dir`
            then combines the shards into the same index a single build makes.
        groups: ``id, group_id`` match groups (e.g. a dedupe run's ``groups.parquet``) kept
            with the index for ``dedupe --against``; ids it lacks get new singleton groups.
        texts: the ``n`` rows' titles, kept for the lexical signals of ``dedupe --against``.
        extra: more fields for the manifest (e.g. where the vectors came from).

    Returns:
        The manifest (of the shard, for a shard build).

    Raises:
        RunDirError: ``ids`` and ``vectors`` differ in length, the budget is too small, or
            ``out`` holds an index trained for other embeddings.
    """
    xb = vectors if vectors.dtype == np.float32 else vectors.astype(np.float32)
    n, d = xb.shape
    if len(ids) != n:
        raise RunDirError(f"{len(ids):,} ids for {n:,} vectors.")
    out = Path(out)
    t0 = time.perf_counter()
    factory = factory or choose_factory(n, d, max_memory, flat_max, opq)
    done = finished_build(out, key, factory, n) if shard is None else None
    if done is not None:
        return done
    index, trained = trained_index(out, xb, factory, key, seed)
    fault_point("index-trained")
    if shard is None:
        add_in_steps(index, xb, "vectors")
        return _finish(
            out,
            index,
            xb,
            ids,
            trained,
            t0,
            model,
            target_recall,
            k,
            k_factor,
            tune_queries,
            seed,
            groups,
            extra,
            texts,
        )
    start, stop = shard_rows(*shard, n)
    return build_shard(out, xb[start:stop], shard, start, key, extra, (index, trained))


def merge_index_dir(
    vectors: np.ndarray,
    ids: list[str],
    out: str | Path,
    model: dict[str, Any] | None = None,
    target_recall: float = 0.95,
    k: int = 10,
    k_factor: int = 10,
    tune_queries: int = 1000,
    seed: int = 0,
    groups: pl.DataFrame | None = None,
    texts: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Combine the shards of ``out/shards`` into ``out``'s index, then tune nprobe.

    Args:
        vectors, ids: the full ``(n, d)`` float32 vectors and ids the shards were cut from
            (for the id map and the recall measurement).

    Raises:
        RunDirError: no shards, a shard missing, shards of another trained index or
            embeddings, or shards that do not cover the n rows.
    """
    out = Path(out)
    metas = shard_metas(out)
    if not metas:
        raise RunDirError(f"{out}: no shards to merge (build them with `eclip index build ... --shard i/N`).")
    n_shards = metas[0]["shards"]
    have = {m["shard"] for m in metas if m["shards"] == n_shards}
    if have != set(range(n_shards)) or len(metas) != n_shards:
        missing = sorted(set(range(n_shards)) - have)
        raise RunDirError(
            f"{out}: shards {', '.join(f'{i}/{n_shards}' for i in missing) or '(mixed counts)'} missing; build them before merging."
        )
    metas.sort(key=lambda m: m["shard"])
    xb = vectors if vectors.dtype == np.float32 else vectors.astype(np.float32)
    trained = read_json(out / "trained.json")
    trained["digest"] = file_digest(out / TRAINED)
    for m in metas:
        if m["trained_digest"] != trained["digest"] or m["key"] != trained["key"]:
            raise RunDirError(
                f"{out}: shard {m['shard']}/{n_shards} was built on another trained index or embeddings; rebuild it."
            )
    if metas[-1]["stop"] != len(xb) or any(a["stop"] != b["start"] for a, b in zip(metas, metas[1:])):
        raise RunDirError(
            f"{out}: the shards cover rows 0-{metas[-1]['stop']:,}, the embeddings have {len(xb):,}; rebuild the shards from these embeddings."
        )
    t0 = time.perf_counter()
    index = faiss.read_index(str(out / "shards" / f"0-of-{n_shards}" / "index.faiss"))
    for m in metas[1:]:
        merge_into(index, faiss.read_index(str(out / "shards" / f"{m['shard']}-of-{n_shards}" / "index.faiss")))
    extra = {**(extra or {}), "merged_shards": n_shards}
    return _finish(
        out, index, xb, ids, trained, t0, model, target_recall, k, k_factor, tune_queries, seed, groups, extra, texts
    )


def add_to_index_dir(
    folder: str | Path,
    vectors: np.ndarray,
    ids: list[str],
    model: dict[str, Any] | None = None,
    groups: pl.DataFrame | None = None,
    texts: list[str] | None = None,
    source: str = "",
) -> dict[str, Any]:
    """Append listings to an index directory without retraining (the trained quantizers are
    kept; nprobe is not re-tuned). Ids already in the index are skipped, so a rerun after a
    kill adds only what is missing.

    Args:
        vectors: ``(m, d)`` float32, L2-normalised, from the index's model.
        ids: their ``m`` catalog ids.
        groups: ``id, group_id`` for the new ids (e.g. from ``dedupe --against``); ids it lacks
            get new singleton groups. Used only when the index keeps groups.
        texts: the ``m`` titles, kept when the index keeps titles.

    Returns:
        The updated manifest.

    Raises:
        RunDirError: vectors from another model or dimension, or lengths differ.
    """
    idx = open_index_dir(folder)
    xb = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(ids) != len(xb):
        raise RunDirError(f"{len(ids):,} ids for {len(xb):,} vectors.")
    idx.check_compatible(model, xb.shape[1])
    known = set(idx.ids)
    keep = np.array([i not in known for i in ids], dtype=bool)
    manifest = dict(idx.manifest)
    t0 = time.perf_counter()
    if keep.any():
        new_ids = [i for i, kp in zip(ids, keep) if kp]
        add_in_steps(idx.index, xb[keep], "new listings")
        old_groups = idx.groups()
        all_groups = None
        if old_groups is not None:
            start = int(old_groups["group_id"].max() or -1) + 1  # type: ignore[arg-type]  # an Int64 column's max
            new_groups = _complete_groups(new_ids, groups, start)
            assert new_groups is not None  # given ids, it always returns a frame
            all_groups = pl.concat([old_groups, new_groups])
        gen = len(manifest.get("adds", [])) + 1
        old_files = manifest["files"]
        all_texts = None
        if idx.texts is not None:
            new_texts = [t for t, kp in zip(texts, keep) if kp] if texts is not None else [""] * len(new_ids)
            all_texts = idx.texts + new_texts
        manifest["files"] = _write_index_files(idx.folder, idx.index, idx.ids + new_ids, all_groups, gen, all_texts)
        size = (idx.folder / manifest["files"]["index"]).stat().st_size
        manifest["n"] = int(idx.index.ntotal)
        manifest.update(
            bytes=size,
            bytes_per_vector=round(size / manifest["n"], 1),
            fraction_of_float32=round(size / (4 * manifest["dim"] * manifest["n"]), 4),
        )
    manifest["adds"] = manifest.get("adds", []) + [
        {
            "source": source,
            "rows": int(keep.sum()),
            "skipped_known_ids": int((~keep).sum()),
            "seconds": round(time.perf_counter() - t0, 2),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    ]
    write_json(manifest, idx.folder / MANIFEST)
    if keep.any():
        for name in set(old_files.values()) - set(manifest["files"].values()):
            (idx.folder / name).unlink(missing_ok=True)
    return manifest


def open_index_dir(folder: str | Path, mmap: bool = False) -> IndexDir:
    """Open an index directory; ``mmap`` maps the index file instead of reading it (faiss
    ``IO_FLAG_MMAP``), for indexes larger than RAM.

    Raises:
        RunDirError: not a finished index directory, or its files disagree.
    """
    folder = Path(folder)
    manifest = read_json(folder / MANIFEST)
    files = manifest.get("files", {})
    if manifest.get("job") != "index" or not (folder / files.get("index", "index.faiss")).exists():
        hint = " (its shards are not merged: run `eclip index merge`)" if (folder / "shards").exists() else ""
        raise RunDirError(f"{folder}: not an index directory{hint}; run `eclip index build` first.")
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    index = faiss.read_index(str(folder / files["index"]), flags)
    if manifest.get("nprobe"):
        set_nprobe(index, int(manifest["nprobe"]))
    refine = refine_stage(index)
    if manifest.get("refine_k_factor") and refine is not None:
        refine.k_factor = int(manifest["refine_k_factor"])
    table = pl.read_parquet(folder / files["ids"])
    ids = table["id"].to_list()
    if len(ids) != index.ntotal:
        raise RunDirError(
            f"{folder}: {files['index']} holds {index.ntotal:,} vectors but {files['ids']} {len(ids):,} ids; rebuild the index."
        )
    return IndexDir(index, ids, manifest, folder, table["text"].to_list() if "text" in table.columns else None)
