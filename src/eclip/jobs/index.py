"""The index jobs: build (whole or one shard), merge shards, add rows, query."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import read_table
from eclip.distributed import RayRunner
from eclip.encoders import DEFAULT_MODEL, Embeddings, load_encoder
from eclip.errors import CatalogError, EclipError, RunDirError
from eclip.index import FLAT_MAX, build_index_dir, open_index_dir
from eclip.index.autotune import choose_factory
from eclip.jobs.embed import EmbedConfig
from eclip.jobs.source import CatalogSource, embeddings_dir, index_source
from eclip.rundir import fault_point, fingerprint, locked


def read_groups(path: str | Path | None) -> pl.DataFrame | None:
    """``id, group_id`` of a dedupe run's ``groups.parquet`` (``None`` without ``path``).

    Raises:
        CatalogError: the file lacks ``id`` or ``group_id``.
    """
    if path is None:
        return None
    frame = read_table(path)
    missing = {"id", "group_id"} - set(frame.columns)
    if missing:
        raise CatalogError(
            f"{path}: no column(s) {', '.join(sorted(missing))}; pass a groups.parquet written by `eclip dedupe`."
        )
    return frame.select(pl.col("id").cast(pl.String), pl.col("group_id").cast(pl.Int64))


def index_build(
    source: str | Path,
    out: str | Path,
    vectors: str = "text",
    factory: str | None = None,
    max_memory: int | None = None,
    target_recall: float = 0.95,
    k: int = 10,
    opq: bool = False,
    flat_max: int = FLAT_MAX,
    shard: str | None = None,
    groups: str | Path | None = None,
    embed_cfg: EmbedConfig | None = None,
    ray: RayRunner | None = None,
) -> dict[str, Any]:
    """Build an index directory over one array of an embeddings directory (or one shard).

    Args:
        source: directory written by ``eclip embed`` (or a dedupe run's ``embeddings``), or a
            catalog, embedded first (resumably) into ``out/embeddings`` with ``embed_cfg``.
        vectors: ``text``, ``image`` or ``fused``; rows lacking that modality are left out.
        shard: ``"i/N"``: build only slice i of N (see :func:`eclip.index.build_index_dir`);
            combine the N with :func:`index_merge`.
        groups: a dedupe run's ``groups.parquet``, kept for ``dedupe --against``.
        ray: build on Ray (:func:`_build_on_ray`): train once here, add the shards' vectors
            in Ray tasks, merge here. The catalog, when ``source`` is one, is embedded on Ray
            too.
        Others: see :func:`eclip.index.build_index_dir`.

    Raises:
        RunDirError: not an embeddings directory, no such array, a bad ``shard``, or ``out``
            holds an index of other embeddings.
        CatalogError: ``groups`` lacks ``id``/``group_id``.
    """
    from eclip.index.shards import parse_shard

    # shards of one index are built side by side (one per machine): only a whole build locks
    if ray is not None and shard:
        raise EclipError("--ray and --shard are two ways to spread one build; use one of them.")
    with contextlib.nullcontext() if shard else locked(out):
        embed_cfg = embed_cfg or EmbedConfig()
        if ray is not None:
            embed_cfg = replace(embed_cfg, ray=ray)
        embeddings = embeddings_dir(source, Path(out) / "embeddings", embed_cfg)
        emb, xb, ids, texts, extra = index_source(embeddings, vectors)
        if ray is not None:
            return _build_on_ray(
                ray,
                xb,
                ids,
                Path(out),
                emb,
                factory or choose_factory(len(xb), xb.shape[1], max_memory, flat_max, opq),
                target_recall,
                k,
                read_groups(groups),
                texts,
                extra,
            )
        return build_index_dir(
            xb,
            ids,
            out,
            model=emb.manifest.get("model"),
            key=emb.key,
            factory=factory,
            max_memory=max_memory,
            target_recall=target_recall,
            k=k,
            opq=opq,
            flat_max=flat_max,
            shard=parse_shard(shard) if shard else None,
            groups=read_groups(groups),
            texts=texts,
            extra=extra,
        )


#: Rows per Ray task of ``index build --ray`` (at least one task per worker).
RAY_ADD_ROWS = 1_000_000


def _add_shard_task(j: int, lo: int, hi: int, xb: np.ndarray, out: str, n_shards: int, key: str) -> dict[str, Any]:
    """One Ray task of ``index build --ray``: rows ``[lo, hi)`` into shard ``j`` of ``n_shards``."""
    from eclip.distributed.ray_runner import named_work
    from eclip.index.shards import build_shard

    with named_work(f"shard {j}/{n_shards} (rows {lo + 1:,}-{hi:,})"):
        return build_shard(out, xb[lo:hi], (j, n_shards), lo, key)


def _build_on_ray(
    ray: RayRunner,
    xb: np.ndarray,
    ids: list[str],
    out: Path,
    emb: Embeddings,
    factory: str,
    target_recall: float,
    k: int,
    groups: pl.DataFrame | None,
    texts: list[str] | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """``index build --ray``: the trained index made once here (:func:`eclip.index.trained.trained_index`),
    each shard's vectors added by a Ray task (:func:`eclip.index.shards.build_shard`, a GPU per
    task when the cluster has them), the shards merged and nprobe tuned here
    (:func:`eclip.index.store.merge_index_dir`): the sharded build's own code, run by Ray."""
    from eclip.index.shards import shard_metas, shard_rows
    from eclip.index.store import finished_build, merge_index_dir
    from eclip.index.trained import trained_index

    done = finished_build(out, emb.key, factory, len(xb))
    if done is not None:
        return done
    n_shards = max(ray.workers(), -(-len(xb) // RAY_ADD_ROWS))
    for meta in shard_metas(out):  # shards of another split would not merge with these
        if meta.get("shards") != n_shards:
            shutil.rmtree(out / "shards" / f"{meta['shard']}-of-{meta['shards']}", ignore_errors=True)
    trained_index(out, xb, factory, emb.key)
    fault_point("index-trained")
    blocks = [shard_rows(i, n_shards, len(xb)) for i in range(n_shards)]
    ray.map_tasks(
        _add_shard_task,
        blocks,
        f"adding {len(xb):,} vectors",
        {"xb": xb, "out": str(out), "n_shards": n_shards, "key": emb.key},
        use_gpu=True,
    )
    extra = {**extra, "executor": {"kind": "ray", **ray.describe()}}
    return merge_index_dir(
        xb, ids, out, emb.manifest.get("model"), target_recall, k, groups=groups, texts=texts, extra=extra
    )


def index_merge(
    index: str | Path,
    embeddings: str | Path | None = None,
    target_recall: float = 0.95,
    k: int = 10,
    groups: str | Path | None = None,
) -> dict[str, Any]:
    """Merge the shards of a sharded ``index build`` into the index directory ``index``.

    Args:
        embeddings: the embeddings the shards were cut from (default: the directory recorded
            by the shards), for the id map and the nprobe tuning.

    Raises:
        RunDirError: shards missing, foreign or not covering the embeddings; another
            process is writing ``index``.
    """
    from eclip.index.shards import shard_metas
    from eclip.index.store import merge_index_dir

    metas = shard_metas(index)
    if not metas:
        raise RunDirError(f"{index}: no shards to merge (build them with `eclip index build ... --shard i/N`).")
    with locked(index):
        emb, xb, ids, texts, extra = index_source(embeddings or metas[0]["embeddings"], metas[0].get("vectors", "text"))
        return merge_index_dir(
            xb,
            ids,
            index,
            emb.manifest.get("model"),
            target_recall,
            k,
            groups=read_groups(groups),
            texts=texts,
            extra=extra,
        )


def _embed_for_index(
    idx: Any, source: str | Path, work: Path, columns: CatalogSource | None
) -> tuple[Embeddings, np.ndarray, list[str], list[str] | None]:
    """The vectors of ``source`` (an embeddings directory, or a catalog embedded now with the
    index's model into ``work``) for the index's modality, with ids and titles."""
    model = (idx.manifest.get("model") or {}).get("name", DEFAULT_MODEL)
    cfg = replace(columns or CatalogSource(), model=model)  # the index's model, whatever was given
    source = embeddings_dir(source, work, cfg.embed_config())
    emb, xb, ids, texts, _ = index_source(source, idx.manifest.get("vectors", "text"))
    idx.check_compatible(emb.manifest.get("model"), xb.shape[1])
    return emb, xb, ids, texts


def index_add(
    index: str | Path, source: str | Path, groups: str | Path | None = None, columns: CatalogSource | None = None
) -> dict[str, Any]:
    """Append the listings of ``source`` (a catalog, or an embeddings directory made with the
    index's model) to an index directory. Catalogs are embedded, resumably, under
    ``INDEX/adds/``. Ids already indexed are skipped, so rerunning after a kill is safe.

    Args:
        groups: ``groups.parquet`` of ``dedupe --against`` for these rows, when the index keeps
            groups (rows it lacks become singleton groups).
        columns: where a catalog's ids, titles and images are (:class:`CatalogSource`: its
            ``id_col``, ``text_cols``, ``image_col``, ``image_root``, ...); its ``model`` is
            replaced by the index's.

    Raises:
        RunDirError: the vectors come from another model or dimension; another process is
            writing ``index``.
        CatalogError, ModelError: bad catalog or model.
    """
    from eclip.index.store import add_to_index_dir

    idx = open_index_dir(index)
    work = Path(index) / "adds" / f"{Path(source).stem}-{fingerprint(str(Path(source).resolve()))[:8]}"
    with locked(index):  # two adds at once would each rewrite the id map
        emb, xb, ids, texts = _embed_for_index(idx, source, work, columns)
        return add_to_index_dir(
            index, xb, ids, emb.manifest.get("model"), read_groups(groups), texts, source=str(Path(source).resolve())
        )


def index_query(
    index: str | Path,
    texts: list[str] | None = None,
    images: list[str] | None = None,
    catalog: str | Path | None = None,
    k: int = 10,
    mmap: bool = False,
    columns: CatalogSource | None = None,
) -> pl.DataFrame:
    """Top-k neighbours in an index directory of titles, image files or a whole catalog.

    The queries are embedded with the model recorded in the index's manifest (the same model
    is the only one accepted). Image files are read like catalog images
    (:func:`eclip.catalog.images.open_image`: decompression-bomb guard, size-bounded URLs),
    relative to the working directory. A catalog is embedded like ``index add`` does (into
    ``INDEX/queries/``, resumably) and queried with the index's own vectors (``text``,
    ``image`` or ``fused``), so an image index is searched with the catalog's images.

    Args:
        columns: the ``catalog``'s columns and image location (:class:`CatalogSource`; its
            ``model`` is replaced by the index's).

    Returns:
        Columns ``query, rank, id, score``.

    Raises:
        RunDirError: not an index directory, or vectors of another model or dimension.
        ModelError: the index's model cannot be loaded.
        EclipError: no query; image queries to a model without an image tower; an image
            that cannot be read (the message names it and why).
    """
    from eclip.catalog.images import ImageFailure, ImageSettings, open_image
    from eclip.index.store import open_index_dir

    idx = open_index_dir(index, mmap=mmap)
    model = idx.manifest.get("model") or {}
    if not (texts or images or catalog is not None):
        raise EclipError("give --text, --image or --catalog to query the index.")
    labels: list[str] = []
    parts = []
    if texts or images:
        encoder = load_encoder(
            model.get("name", DEFAULT_MODEL), device=None, runtime=model.get("runtime", "torch")
        )  # a few queries: torch needs no export
        if texts:
            parts.append(encoder.encode(list(texts)))
            labels += list(texts)
        if images:
            if not encoder.has_images:
                raise EclipError(
                    f"{index} was built with {model.get('name')}, a text model: it cannot embed --image queries; query it with --text or --catalog."
                )
            import tempfile

            import torch

            transform = encoder.image_transform
            assert transform is not None  # has_images: the encoder has an image tower (checked above)
            pix = []
            with tempfile.TemporaryDirectory(prefix="eclip-query-") as cache:
                settings = ImageSettings(
                    root=Path.cwd(), cache_dir=Path(cache), allow_outside_root=True, allow_private_urls=True
                )  # what the user named
                for ref in images:
                    try:
                        pix.append(transform(open_image(ref, settings)))
                    except ImageFailure as exc:
                        raise EclipError(f"--image {ref}: {exc}") from None
            parts.append(encoder.encode_images(torch.stack(pix)))
            labels += list(images)
        idx.check_compatible(encoder.describe(), parts[0].shape[1])
    if catalog is not None:  # keyed by the catalog and its columns; the model is always the index's
        where = {k_: v for k_, v in asdict(columns).items() if k_ != "model"} if columns else {}
        work = Path(index) / "queries" / f"{Path(catalog).stem}-{fingerprint(str(Path(catalog).resolve()), where)[:8]}"
        _, xq, ids, _ = _embed_for_index(idx, catalog, work, columns)
        parts.append(xq)
        labels += ids
    q = np.concatenate(parts)
    scores, rows = idx.search(q, k)
    out = []
    for qi, (sc, rw) in enumerate(zip(scores, rows)):
        for r, (s_, row) in enumerate(zip(sc, rw)):
            if row >= 0:
                out.append({"query": labels[qi], "rank": r + 1, "id": idx.ids[row], "score": float(s_)})
    return pl.DataFrame(out, schema={"query": pl.String, "rank": pl.Int64, "id": pl.String, "score": pl.Float32})
