"""The Python API: each function runs one job of the spine and writes a run directory.

    catalog -> encoders -> index -> matcher -> (evaluation)

The CLI (:mod:`eclip.cli`) is a thin layer over these functions.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import Catalog, load_catalog, read_table
from eclip.cluster import KNN_MODE_MIN_ROWS, HdbscanSettings, cluster_knn, cluster_pca
from eclip.cluster.summary import class_tfidf_terms, medoids
from eclip.classify import (
    Taxonomy,
    ADULT_CONCEPTS,
    ADULT_LOGIT_SCALE,
    DEFAULT_LOGIT_SCALE,
    DEFAULT_TEMPLATES,
    DEFAULT_THRESHOLD as ADULT_THRESHOLD,
    GENERAL_CONCEPTS,
    UNKNOWN,
    LinearProbe,
    Predictions,
    adult_scores,
    align_probe,
    classify_taxonomy,
    combine,
    concept_vectors,
    fit_probe,
    flat_predictions,
    label_vectors,
    parse_labels,
    softmax,
    taxonomy_vectors,
)
from eclip.catalog.images import MAX_IMAGE_BYTES, URL_TIMEOUT_S, ImageSettings
from eclip.encoders import (
    DEFAULT_MODEL,
    CharNgramTfidf,
    Dist,
    EmbedSettings,
    Embeddings,
    embed_catalog,
    extract_codes,
    load_embeddings,
    load_encoder,
)
from eclip.errors import CatalogError, EclipError, GoldError, RunDirError
from eclip.evaluation import (
    Calibration,
    at_threshold,
    binary_metrics,
    blocking_recall,
    calibrate,
    classification_metrics,
    cluster_metrics,
    load_class_labels,
    load_gold,
    noise_as_singletons,
    threshold_for_precision,
)
from eclip.encoders.phash import hamming
from eclip.index import FLAT_MAX, build_index_dir, choose_factory, knn_self_join, open_index_dir
from eclip.index.binary import hamming_knn
from eclip.matcher import (
    METHODS,
    SIGNALS,
    Grouping,
    ModalityThresholds,
    ScoreWeights,
    code_block_pairs,
    combine_modalities,
    cosine_pairs,
    group,
    knn_pairs,
    passing_signals,
    read_review,
    score_pairs,
    union_candidates,
)
from eclip.progress import console
from eclip.rundir import MANIFEST, fingerprint, read_json, write_json, write_parquet

#: Default grouping: mutual best match. On the shared dev catalogs it beats connected
#: components at every threshold (README, "How matching works").
DEFAULT_METHOD = "mutual"
#: Default threshold on the combined score, fixed on the dev catalogs before evaluation.
DEFAULT_THRESHOLD = 0.6


@dataclass
class EmbedConfig:
    """Settings of :func:`embed`; recorded in the embeddings manifest.

    Attributes:
        model: model spec (see :mod:`eclip.encoders.spec`).
        id_col, text_cols: as in :func:`eclip.catalog.load_catalog`.
        image_col: column of image paths (relative to ``image_root``) or http(s) URLs.
        image_root: the folder image paths are relative to, and may not leave (default: the
            catalog file's folder).
        allow_outside_root: follow image paths that leave the catalog's folder.
        device: torch device (``None``: CUDA when available).
        overwrite: replace embeddings of another model or settings in ``out``.
        url_timeout_s, url_max_bytes: limits of each image download.
        settings: shard size, fusion weight, pHash, batch size, workers.
    """

    model: str = DEFAULT_MODEL
    id_col: str = "id"
    text_cols: list[str] | None = None
    image_col: str | None = None
    image_root: Path | None = None
    allow_outside_root: bool = False
    device: str | None = None
    overwrite: bool = False
    url_timeout_s: float = URL_TIMEOUT_S
    url_max_bytes: int = MAX_IMAGE_BYTES
    settings: EmbedSettings = field(default_factory=EmbedSettings)


def embed(catalog: str | Path, out: str | Path, cfg: EmbedConfig | None = None) -> dict[str, Any]:
    """Embed a catalog's titles (and images) into a resumable, sharded embeddings directory.

    See :mod:`eclip.encoders.embed` for the layout, the fusion rule and how resuming and
    ``torchrun`` work.

    Returns:
        The manifest.

    Raises:
        CatalogError: bad catalog or columns. ModelError: bad model spec or weights.
        RunDirError: ``out`` holds embeddings of another model (without ``overwrite``).
    """
    cfg = cfg or EmbedConfig()
    out = Path(out)
    cat = load_catalog(catalog, cfg.id_col, cfg.text_cols, cfg.image_col)
    if cat.empty_rows and cat.images is None:
        console.print(f"[yellow]{len(cat.empty_rows)} row(s) have empty text; they are embedded but flagged has_text = false.[/]")
    dist = Dist.from_env()
    device = cfg.device
    if device is None and dist.world > 1:
        import torch

        device = f"cuda:{int(__import__('os').environ.get('LOCAL_RANK', dist.rank))}" if torch.cuda.is_available() else "cpu"
    encoder = load_encoder(cfg.model, device=device, batch_size=cfg.settings.batch_size)
    images = None
    if cat.images is not None:
        root = Path(cfg.image_root) if cfg.image_root else cat.root
        if not root.is_dir():
            raise CatalogError(f"--image-root {root}: no such folder.")
        images = ImageSettings(root=root, cache_dir=out / "image_cache", allow_outside_root=cfg.allow_outside_root, max_bytes=cfg.url_max_bytes, timeout_s=cfg.url_timeout_s)
    return embed_catalog(encoder, cat, out, cfg.settings, images, cfg.overwrite, dist)


def train(
    catalog: str | Path,
    out: str | Path,
    cfg: Any = None,
    id_col: str = "id",
    text_cols: list[str] | None = None,
    image_col: str = "image",
    image_root: Path | None = None,
    allow_outside_root: bool = False,
    resume: str | None = None,
) -> dict[str, Any]:
    """Train an e-CLIP model on a catalog's images and titles; see :mod:`eclip.train.loop`.

    Returns:
        The model card; the model folder is ``out/model`` (``--model out/model`` loads it).

    Raises:
        CatalogError: bad catalog or columns. EclipError: bad settings. RunDirError: a run
            directory with checkpoints and no ``resume``, or a checkpoint of other settings.
    """
    from eclip.train import TrainConfig, train as run_train

    cfg = cfg or TrainConfig()
    if cfg.image_only and text_cols is None:
        text_cols = [image_col]  # titles are not read; any column satisfies the catalog check
    cat = load_catalog(catalog, id_col, text_cols, image_col)
    for col in (cfg.zeroshot_col, cfg.group_col):
        if col is not None and col not in cat.table.columns:
            raise CatalogError(f"{catalog}: no column {col!r} (columns: {', '.join(cat.table.columns)}).")
    root = Path(image_root) if image_root else cat.root
    images = ImageSettings(root=root, cache_dir=Path(out) / "image_cache", allow_outside_root=allow_outside_root)
    return run_train(cat, images, out, cfg, resume)


def _index_source(embeddings: str | Path, vectors: str, emb: Embeddings | None = None) -> tuple[Embeddings, np.ndarray, list[str], list[str] | None, dict[str, Any]]:
    """One array of an embeddings directory, the rows having that modality, their ids, their
    titles (re-read from the embedded catalog when it is still there) and provenance.
    ``emb``: the directory, when the caller has already loaded it."""
    emb = emb if emb is not None else load_embeddings(embeddings)
    try:
        arr, mask = emb.vectors(vectors)
    except KeyError:
        arr = None
    if arr is None:
        raise RunDirError(f"{embeddings} has no {vectors!r} vectors (it has {', '.join(emb.manifest.get('arrays', []))}).")
    rows = np.flatnonzero(mask)
    texts = None
    source = emb.manifest.get("catalog")
    if source and Path(source).exists():
        try:
            cat = load_catalog(source, emb.manifest.get("id_col", "id"), emb.manifest.get("settings", {}).get("text_cols"))
            texts = [cat.texts[i] for i in rows] if cat.ids == emb.ids else None
        except EclipError:
            texts = None
    extra = {"embeddings": str(Path(embeddings).resolve()), "vectors": vectors, "rows_left_out": int(len(mask) - len(rows))}
    return emb, arr[rows], [emb.ids[i] for i in rows], texts, extra


def _embeddings_dir(source: str | Path, work: Path, cfg: EmbedConfig) -> Path:
    """``source`` itself when it is an embeddings directory; else ``source`` is a catalog,
    embedded (resumably) into ``work`` with ``cfg``, and ``work`` is returned."""
    source = Path(source)
    if source.is_dir() and read_json(source / MANIFEST).get("job") == "embed":
        return source
    embed(source, work, cfg)
    return work


def _read_groups(path: str | Path | None) -> pl.DataFrame | None:
    if path is None:
        return None
    frame = read_table(path)
    missing = {"id", "group_id"} - set(frame.columns)
    if missing:
        raise CatalogError(f"{path}: no column(s) {', '.join(sorted(missing))}; pass a groups.parquet written by `eclip dedupe`.")
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
) -> dict[str, Any]:
    """Build an index directory over one array of an embeddings directory (or one shard).

    Args:
        source: directory written by ``eclip embed`` (or a dedupe run's ``embeddings``), or a
            catalog, embedded first (resumably) into ``out/embeddings`` with ``embed_cfg``.
        vectors: ``text``, ``image`` or ``fused``; rows lacking that modality are left out.
        shard: ``"i/N"``: build only slice i of N (see :func:`eclip.index.build_index_dir`);
            combine the N with :func:`index_merge`.
        groups: a dedupe run's ``groups.parquet``, kept for ``dedupe --against``.
        Others: see :func:`eclip.index.build_index_dir`.

    Raises:
        RunDirError: not an embeddings directory, no such array, a bad ``shard``, or ``out``
            holds an index of other embeddings.
        CatalogError: ``groups`` lacks ``id``/``group_id``.
    """
    from eclip.index.store import parse_shard

    embeddings = _embeddings_dir(source, Path(out) / "embeddings", embed_cfg or EmbedConfig())
    emb, xb, ids, texts, extra = _index_source(embeddings, vectors)
    return build_index_dir(
        xb, ids, out, model=emb.manifest.get("model"), key=emb.key, factory=factory, max_memory=max_memory,
        target_recall=target_recall, k=k, opq=opq, flat_max=flat_max, shard=parse_shard(shard) if shard else None,
        groups=_read_groups(groups), texts=texts, extra=extra,
    )


def index_merge(index: str | Path, embeddings: str | Path | None = None, target_recall: float = 0.95, k: int = 10, groups: str | Path | None = None) -> dict[str, Any]:
    """Merge the shards of a sharded ``index build`` into the index directory ``index``.

    Args:
        embeddings: the embeddings the shards were cut from (default: the directory recorded
            by the shards), for the id map and the nprobe tuning.

    Raises:
        RunDirError: shards missing, foreign or not covering the embeddings.
    """
    from eclip.index.store import merge_index_dir, shard_metas

    metas = shard_metas(index)
    if not metas:
        raise RunDirError(f"{index}: no shards to merge (build them with `eclip index build ... --shard i/N`).")
    emb, xb, ids, texts, extra = _index_source(embeddings or metas[0]["embeddings"], metas[0].get("vectors", "text"))
    return merge_index_dir(xb, ids, index, emb.manifest.get("model"), target_recall, k, groups=_read_groups(groups), texts=texts, extra=extra)


def _embed_for_index(idx: Any, source: str | Path, work: Path, catalog_args: dict[str, Any]) -> tuple[Embeddings, np.ndarray, list[str], list[str] | None]:
    """The vectors of ``source`` (an embeddings directory, or a catalog embedded now with the
    index's model into ``work``) for the index's modality, with ids and titles."""
    model = (idx.manifest.get("model") or {}).get("name", DEFAULT_MODEL)
    source = _embeddings_dir(source, work, EmbedConfig(model=model, **catalog_args))
    emb, xb, ids, texts, _ = _index_source(source, idx.manifest.get("vectors", "text"))
    idx.check_compatible(emb.manifest.get("model"), xb.shape[1])
    return emb, xb, ids, texts


def index_add(index: str | Path, source: str | Path, groups: str | Path | None = None, **catalog_args: Any) -> dict[str, Any]:
    """Append the listings of ``source`` (a catalog, or an embeddings directory made with the
    index's model) to an index directory. Catalogs are embedded, resumably, under
    ``INDEX/adds/``. Ids already indexed are skipped, so rerunning after a kill is safe.

    Args:
        groups: ``groups.parquet`` of ``dedupe --against`` for these rows, when the index keeps
            groups (rows it lacks become singleton groups).
        catalog_args: ``id_col``, ``text_cols``, ``image_col``, ``image_root``... for a catalog.

    Raises:
        RunDirError: the vectors come from another model or dimension.
        CatalogError, ModelError: bad catalog or model.
    """
    from eclip.index.store import add_to_index_dir

    idx = open_index_dir(index)
    work = Path(index) / "adds" / f"{Path(source).stem}-{fingerprint(str(Path(source).resolve()))[:8]}"
    emb, xb, ids, texts = _embed_for_index(idx, source, work, catalog_args)
    return add_to_index_dir(index, xb, ids, emb.manifest.get("model"), _read_groups(groups), texts, source=str(Path(source).resolve()))


def index_query(
    index: str | Path,
    texts: list[str] | None = None,
    images: list[str] | None = None,
    catalog: str | Path | None = None,
    k: int = 10,
    mmap: bool = False,
    **catalog_args: Any,
) -> pl.DataFrame:
    """Top-k neighbours in an index directory of titles, image files or a whole catalog.

    The queries are embedded with the model recorded in the index's manifest (the same model
    is the only one accepted). Returns columns ``query, rank, id, score``.

    Raises:
        RunDirError: not an index directory, or vectors of another model or dimension.
        ModelError: the index's model cannot be loaded.
    """
    from eclip.index.store import open_index_dir

    idx = open_index_dir(index, mmap=mmap)
    model = idx.manifest.get("model") or {}
    encoder = load_encoder(model.get("name", DEFAULT_MODEL), device=None)
    labels: list[str] = []
    parts = []
    if texts:
        parts.append(encoder.encode(list(texts)))
        labels += list(texts)
    if images:
        import torch
        from PIL import Image

        pix = [encoder.image_transform(Image.open(p).convert("RGB")) for p in images]
        parts.append(encoder.encode_images(torch.stack(pix)))
        labels += list(images)
    if catalog is not None:
        cat = load_catalog(catalog, **catalog_args)
        parts.append(encoder.encode(cat.texts))
        labels += cat.ids
    if not parts:
        raise EclipError("give --text, --image or --catalog to query the index.")
    q = np.concatenate(parts)
    scores, rows = idx.search(q, k, encoder.describe())
    out = []
    for qi, (sc, rw) in enumerate(zip(scores, rows)):
        for r, (s_, row) in enumerate(zip(sc, rw)):
            if row >= 0:
                out.append({"query": labels[qi], "rank": r + 1, "id": idx.ids[row], "score": float(s_)})
    return pl.DataFrame(out, schema={"query": pl.String, "rank": pl.Int64, "id": pl.String, "score": pl.Float32})


@dataclass
class CatalogSource:
    """Where a job's rows, titles and images come from, and the model that embeds them (the
    fields shared by :class:`DedupeConfig` and :class:`ClusterConfig`; see
    :class:`EmbedConfig`)."""

    id_col: str = "id"
    text_cols: list[str] | None = None
    image_col: str | None = None
    image_root: Path | None = None
    allow_outside_root: bool = False
    model: str = DEFAULT_MODEL

    def embed_config(self, text_cols: list[str] | None = None, **settings: Any) -> EmbedConfig:
        """The :class:`EmbedConfig` that embeds this source (``text_cols`` overrides the
        configured columns; ``settings`` are further :class:`EmbedConfig` fields)."""
        return EmbedConfig(
            model=self.model, id_col=self.id_col, text_cols=text_cols if text_cols is not None else self.text_cols,
            image_col=self.image_col, image_root=self.image_root, allow_outside_root=self.allow_outside_root, **settings,
        )

    def inputs(self, source: str | Path, emb: Embeddings) -> dict[str, Any]:
        """The manifest's ``inputs`` of a job that read ``source`` through the embeddings
        ``emb`` (catalog, columns and image location as embedded)."""
        made = emb.manifest
        return {
            "source": str(Path(source).resolve()),
            "catalog": made.get("catalog"),
            "id_col": made.get("id_col", self.id_col),
            "text_cols": made.get("settings", {}).get("text_cols"),
            "image_col": made.get("settings", {}).get("image_col"),
            "image_root": str(Path(self.image_root).resolve()) if self.image_root else None,
            "allow_outside_root": self.allow_outside_root,
        }


@dataclass
class DedupeConfig(CatalogSource):
    """Settings of :func:`dedupe`; every field is recorded in the manifest.

    Attributes:
        id_col, text_cols, image_col, image_root, allow_outside_root: catalog columns and
            image location (as in :class:`EmbedConfig`).
        model: model spec (see :mod:`eclip.encoders.spec`); ignored when ``embeddings`` is set.
        embeddings: an embeddings directory from ``eclip embed`` to use instead of embedding.
        signals: signals that propose and accept matches, among ``text``, ``image``,
            ``fused``, ``phash``; ``None``: every one the embeddings have.
        k: neighbours per row in each kNN self-join.
        method: grouping method, ``mutual`` or ``components``.
        threshold: minimum final score of a match (= the text threshold, see
            :func:`eclip.matcher.combine_modalities`).
        image_threshold, fused_threshold: minimum cosines of the image and fused signals.
        phash_max_distance: largest pHash Hamming distance of a match, bits.
        lexical: add the TF-IDF and model-code signals (and code blocking) to the text score.
        max_code_block: rows sharing a model code are paired when there are at most this many.
        batch_size: rows per encoder forward pass. workers: image-decoding workers.
        cache_dir: embeddings directory to write (default ``<out>/embeddings``).
        flat_max: below this many rows search is exact (Flat), above it IVF-PQ (see
            :func:`eclip.index.choose_factory`).
        review: a filled-in review CSV (``eclip report``): its ``same`` / ``different``
            decisions become must-link / cannot-link constraints on grouping.
    """

    embeddings: Path | None = None
    signals: tuple[str, ...] | None = None
    k: int = 10
    method: str = DEFAULT_METHOD
    threshold: float = DEFAULT_THRESHOLD
    image_threshold: float = ModalityThresholds.image
    fused_threshold: float = ModalityThresholds.fused
    phash_max_distance: int = ModalityThresholds.phash
    lexical: bool = True
    max_code_block: int = 20
    batch_size: int = 64
    workers: int = -1
    cache_dir: Path | None = None
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    flat_max: int = FLAT_MAX
    review: Path | None = None

    @property
    def thresholds(self) -> ModalityThresholds:
        return ModalityThresholds(self.threshold, self.image_threshold, self.fused_threshold, self.phash_max_distance)


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


def _get_embeddings(cat: Catalog, cfg: DedupeConfig, out: Path, timer: _Timer) -> Embeddings:
    """The catalog's embeddings: read from ``cfg.embeddings``, or made (resumably) in the cache."""
    if cfg.embeddings is None:
        ecfg = cfg.embed_config(list(cat.text_cols), settings=EmbedSettings(batch_size=cfg.batch_size, workers=cfg.workers))
        with timer("embed"):
            embed(cat.path, cfg.cache_dir or out / "embeddings", ecfg)
    folder = cfg.embeddings or cfg.cache_dir or out / "embeddings"
    with timer("load_embeddings"):
        emb = load_embeddings(folder)
    if emb.ids != cat.ids:
        raise RunDirError(
            f"{folder} holds embeddings of another catalog or row order ({len(emb.ids):,} rows vs {len(cat):,}); "
            f"run `eclip embed {cat.path} --out DIR` and pass that DIR."
        )
    made_with = emb.manifest.get("settings", {}).get("text_cols")
    if made_with is not None and list(made_with) != list(cat.text_cols):
        raise RunDirError(f"{folder} embedded the columns {made_with}, not {list(cat.text_cols)}; pass the same --text-cols or re-embed.")
    return emb


def _signals(emb: Embeddings, cfg: DedupeConfig) -> tuple[str, ...]:
    available = ["text"] + (["image", "fused"] if emb.image is not None else []) + (["phash"] if emb.phash is not None else [])
    if cfg.signals is None:
        return tuple(available)
    unknown = [s for s in cfg.signals if s not in SIGNALS]
    if unknown:
        raise EclipError(f"unknown signal(s) {', '.join(unknown)}; choose among {', '.join(SIGNALS)}.")
    missing = [s for s in cfg.signals if s not in available]
    if missing:
        raise EclipError(
            f"signal(s) {', '.join(missing)} not in these embeddings (they have {', '.join(available)}); "
            "image and fused need an open_clip model and --image-col, phash needs --image-col."
        )
    if not cfg.signals:
        raise EclipError(f"--signals is empty; choose among {', '.join(available)}.")
    return tuple(cfg.signals)


def _knn_table(vectors: np.ndarray, rows: np.ndarray, key: str, k: int, flat_max: int, folder: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Top-``k`` neighbours among ``rows`` of ``vectors`` via an index directory cached in
    ``folder`` (rebuilt when it was built from other embeddings or settings): ``(scores, nn,
    info)`` as :func:`eclip.index.knn_self_join` returns them (positions within ``rows``)."""
    sub = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    factory = choose_factory(len(sub), sub.shape[1], flat_max=flat_max)
    built = read_json(folder / MANIFEST)
    trained = read_json(folder / "trained.json")
    if (built and (built.get("key"), built.get("factory")) != (key, factory)) or (trained and (trained.get("key"), trained.get("factory")) != (key, factory)):
        console.print(f"[yellow]{folder} was built from other embeddings or settings; rebuilding it.[/]")
        shutil.rmtree(folder)
        built = {}
    if not built:
        build_index_dir(sub, [str(r) for r in rows], folder, key=key, factory=factory, k=k)
    idx = open_index_dir(folder)
    scores, nn = knn_self_join(idx, sub, k)
    info = {k_: idx.manifest.get(k_) for k_ in ("factory", "n", "nprobe", f"recall@{k}", "gpus")}
    return scores, nn, info


def _knn(vectors: np.ndarray, rows: np.ndarray, key: str, cfg: DedupeConfig, folder: Path) -> tuple[pl.DataFrame, dict]:
    """kNN pairs (catalog row positions) among ``rows`` of ``vectors`` (see :func:`_knn_table`)."""
    _, nn, info = _knn_table(vectors, rows, key, cfg.k, cfg.flat_max, folder)
    pairs = knn_pairs(nn)  # positions within `rows`; rows is sorted, so a < b still holds
    return pl.DataFrame({"a": rows[pairs["a"].to_numpy()], "b": rows[pairs["b"].to_numpy()], "rank": pairs["rank"]}), info


def _start_run(cfg: DedupeConfig | None, out: str | Path) -> tuple[DedupeConfig, Path, _Timer, float]:
    """Check the config, create the run directory, start the clock."""
    cfg = cfg or DedupeConfig()
    if cfg.method not in METHODS:
        raise EclipError(f"grouping method {cfg.method!r} is not known; use one of {', '.join(METHODS)}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return cfg, out, _Timer(), time.perf_counter()


def dedupe(catalog: str | Path, out: str | Path, cfg: DedupeConfig | None = None) -> dict[str, Any]:
    """Find match groups in a catalog and write them to the run directory ``out``.

    Each enabled signal proposes candidates (text kNN plus model-code blocks, image kNN, fused
    kNN, pHash Hamming neighbours); every candidate is scored on every signal, and a pair
    matches when any signal passes its own threshold (:func:`eclip.matcher.combine_modalities`).

    Writes ``groups.parquet`` (id, group_id, group_size, matched_to, score, status; every
    input row once), ``pairs.parquet`` (id_a, id_b, score, one column per signal, rank,
    source, matched) and ``manifest.json``. Embeddings and indexes are cached under ``out``
    so that a rerun, or a run after a kill, reuses them.

    Returns:
        The manifest.

    Raises:
        CatalogError, ModelError: bad input; the message says what to fix.
        RunDirError: ``cfg.embeddings`` belongs to another catalog.
        EclipError: unknown grouping method or signal.
    """
    cfg, out, timer, t_start = _start_run(cfg, out)
    with timer("read"):
        cat = load_catalog(catalog, cfg.id_col, cfg.text_cols, cfg.image_col)
    n = len(cat)
    emb = _get_embeddings(cat, cfg, out, timer)
    signals_on = _signals(emb, cfg)
    has_text = emb.has_text & np.array([bool(t) for t in cat.texts])
    masks = {"text": has_text, "image": emb.has_image, "fused": emb.has_text | emb.has_image, "phash": emb.has_image}
    usable = np.zeros(n, dtype=bool)
    for s_ in signals_on:
        usable |= masks[s_]
    if cat.empty_rows:
        shown = ", ".join(str(i + 1) for i in cat.empty_rows[:10])
        console.print(
            f"[yellow]{len(cat.empty_rows)} row(s) have empty text in {', '.join(cat.text_cols)} "
            f"(rows {shown}{' ...' if len(cat.empty_rows) > 10 else ''}); they are matched on images only, "
            "or written as singletons with status 'empty_text'.[/]"
        )

    lists: dict[str, pl.DataFrame] = {}
    index_info: dict[str, Any] = {}
    codes = [extract_codes(t) for t in cat.texts] if cfg.lexical and "text" in signals_on else None
    with timer("search"):
        for s_ in ("text", "image", "fused"):
            rows = np.flatnonzero(masks[s_])
            if s_ in signals_on and len(rows) >= 2:
                lists[s_], index_info[s_] = _knn(emb.vectors(s_)[0], rows, fingerprint(emb.key, s_, rows.tolist()), cfg, out / "index" / s_)
        if codes is not None:
            lists["code"] = code_block_pairs([c if has_text[i] else frozenset() for i, c in enumerate(codes)], cfg.max_code_block)
        if "phash" in signals_on:
            rows = np.flatnonzero(masks["phash"])
            dist, nn = hamming_knn(emb.phash[rows], cfg.k, cfg.phash_max_distance)
            nn = np.where(nn >= 0, rows[np.maximum(nn, 0)], -1)
            full = np.full((n, cfg.k), -1, dtype=np.int64)
            full[rows] = nn
            lists["phash"] = knn_pairs(full)
            index_info["phash"] = {"kind": "IndexBinaryFlat", "bits": 64, "max_distance": cfg.phash_max_distance, "rows": int(len(rows))}
    with timer("candidates"):
        cand = union_candidates(lists)
    a, b = cand["a"].to_numpy(), cand["b"].to_numpy()
    with timer("score"):
        signals: dict[str, np.ndarray] = {}
        if "text" in signals_on:
            tfidf = CharNgramTfidf().fit_transform(cat.texts) if cfg.lexical else None
            text = score_pairs(a, b, emb.text, tfidf, codes, cfg.weights)
            invalid = ~(has_text[a] & has_text[b])
            for name, v in text.items():
                v[invalid] = np.nan
                signals["text_score" if name == "score" else name] = v
        if "image" in signals_on:
            signals["cos_image"] = cosine_pairs(emb.image, a, b, emb.has_image)
        if "fused" in signals_on:
            signals["cos_fused"] = cosine_pairs(emb.fused, a, b, masks["fused"])
        if "phash" in signals_on:
            d = hamming(emb.phash[a], emb.phash[b]).astype(np.float32)
            d[~(emb.has_image[a] & emb.has_image[b])] = np.nan
            signals["phash_distance"] = d
        score = combine_modalities(signals, cfg.thresholds) if len(a) else np.zeros(0, np.float32)
    constraints = read_review(cfg.review, cat.ids) if cfg.review else None
    with timer("group"):
        grouping = group(n, a, b, score, cfg.threshold, cfg.method, constraints)
    with timer("write"):
        groups = _groups_frame(cat, grouping, usable)
        write_parquet(groups, out / "groups.parquet")
        ids = np.array(cat.ids, dtype=object)
        pairs = pl.DataFrame(
            {
                "id_a": ids[a].tolist(),
                "id_b": ids[b].tolist(),
                "score": score,
                **signals,
                "rank": cand["rank"],
                "source": cand["source"],
                "matched": grouping.accepted,
            }
        ).with_columns(pl.col(pl.Float32).fill_nan(None)).sort("score", descending=True)
        write_parquet(pairs, out / "pairs.parquet")

    total = time.perf_counter() - t_start
    sizes = groups.group_by("group_id").len()["len"]
    matched = grouping.accepted
    manifest = {
        "job": "dedupe",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": {
            "catalog": str(Path(catalog).resolve()),
            "format": Path(catalog).suffix.lstrip("."),
            "id_col": cat.id_col,
            "text_cols": list(cat.text_cols),
            "image_col": cat.image_col,
            "image_root": str(Path(cfg.image_root).resolve()) if cfg.image_root else None,
            "allow_outside_root": cfg.allow_outside_root,
        },
        "model": emb.manifest.get("model"),
        "embeddings": {"dir": str(cfg.embeddings or cfg.cache_dir or out / "embeddings"), "key": emb.key, "dim": int(emb.text.shape[1]), "reused_rows": emb.manifest.get("reused_rows"), "embedded_rows": emb.manifest.get("embedded_rows")},
        "index": index_info,
        "matching": {
            "signals": list(signals_on),
            "k": cfg.k,
            "method": cfg.method,
            "threshold": cfg.threshold,
            "thresholds": asdict(cfg.thresholds),
            "lexical": cfg.lexical,
            "weights": asdict(cfg.weights),
            "max_code_block": cfg.max_code_block,
            "review": {"file": str(Path(cfg.review).resolve()), "must_link_pairs": len(constraints.must_a), "cannot_link_pairs": len(constraints.cannot_a)} if constraints is not None else None,
        },
        "counts": {
            "rows": n,
            "empty_text_rows": len(cat.empty_rows),
            "unmatchable_rows": int((~usable).sum()),
            "candidate_pairs": len(cand),
            "matched_pairs": int(matched.sum()),
            "matched_pairs_by_signal": _passing(signals, cfg.thresholds, matched),
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


def dedupe_against(catalog: str | Path, index: str | Path, out: str | Path, cfg: DedupeConfig | None = None) -> dict[str, Any]:
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
    """
    from eclip.matcher.incremental import assign_incremental

    cfg, out, timer, t_start = _start_run(cfg, out)
    idx = open_index_dir(index)
    vectors = idx.manifest.get("vectors", "text")
    with timer("read"):
        cat = load_catalog(catalog, cfg.id_col, cfg.text_cols, cfg.image_col)
    n = len(cat)
    model = (idx.manifest.get("model") or {}).get("name", DEFAULT_MODEL)
    emb = _get_embeddings(cat, replace(cfg, model=model), out, timer)
    arr, usable = emb.vectors(vectors)
    if arr is None:
        raise RunDirError(f"the index holds {vectors!r} vectors; embed the new rows' images too (--image-col).")
    idx.check_compatible(emb.manifest.get("model"), arr.shape[1])
    if vectors == "text":
        usable = usable & np.array([bool(t) for t in cat.texts])
    position = {i: r for r, i in enumerate(idx.ids)}
    indexed = np.array([i in position for i in cat.ids], dtype=bool)
    groups_frame = idx.groups()
    old_groups = (
        groups_frame["group_id"].to_numpy() if groups_frame is not None else np.arange(len(idx.ids), dtype=np.int64)
    )
    fresh = np.flatnonzero(~indexed)  # subset position -> catalog row
    rows = np.flatnonzero(usable & ~indexed)
    with timer("search"):
        scores, nn = idx.search(arr[rows], cfg.k, emb.manifest.get("model"))
        keep = nn >= 0
        q_row = np.repeat(rows, cfg.k).reshape(len(rows), cfg.k)[keep]
        old_row, old_cos = nn[keep], scores[keep]
        within, _ = _knn(arr, rows, fingerprint(emb.key, "against", rows.tolist()), cfg, out / "index" / vectors) if len(rows) >= 2 else (pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Int64, "b": pl.Int64}), {})
        a, b = within["a"].to_numpy(), within["b"].to_numpy()
    with timer("score"):
        threshold = {"text": cfg.threshold, "image": cfg.image_threshold, "fused": cfg.fused_threshold}[vectors]
        lexical = vectors == "text" and cfg.lexical and idx.texts is not None
        if lexical:
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
        inc = assign_incremental(len(fresh), sub[a], sub[b], s_within, sub[q_row], old_row, s_old, old_groups, threshold, cfg.method)
    with timer("write"):
        ids = np.array(cat.ids, dtype=object)
        old_ids = np.array(idx.ids, dtype=object)
        group_id = np.zeros(n, dtype=np.int64)
        group_id[indexed] = old_groups[[position[i] for i in ids[indexed]]]
        group_id[fresh] = inc.group_id
        status = np.full(n, "already_indexed", dtype=object)
        status[fresh] = np.where(inc.joined, "joined", np.where(inc.new_sizes > 1, "new_group", np.where(usable[fresh], "singleton", "unmatchable")))
        matched_to = np.full(n, None, dtype=object)
        score = np.full(n, np.nan, dtype=np.float32)
        own = inc.partner_old >= 0
        matched_to[fresh[own]] = old_ids[inc.partner_old[own]]
        peer = ~own & (inc.partner_new >= 0)
        matched_to[fresh[peer]] = ids[fresh[inc.partner_new[peer]]]
        score[fresh] = inc.score
        also = [[] for _ in range(n)]
        for j, r in enumerate(fresh):
            also[r] = inc.also_matches[j]
        groups = pl.DataFrame(
            {"id": cat.ids, "group_id": group_id, "status": status.tolist(), "matched_to": matched_to.tolist(), "score": score, "also_matches": also},
            schema={"id": pl.String, "group_id": pl.Int64, "status": pl.String, "matched_to": pl.String, "score": pl.Float32, "also_matches": pl.List(pl.Int64)},
        )
        write_parquet(groups, out / "groups.parquet")
        pairs = pl.concat([
            pl.DataFrame({"id_a": ids[q_row].tolist(), "id_b": old_ids[old_row].tolist(), "against": "index", "score": np.asarray(s_old, np.float32), "cos_embedding": old_cos}, schema_overrides={"id_a": pl.String, "id_b": pl.String}),
            pl.DataFrame({"id_a": ids[a].tolist(), "id_b": ids[b].tolist(), "against": "new", "score": np.asarray(s_within, np.float32), "cos_embedding": cos_within}, schema_overrides={"id_a": pl.String, "id_b": pl.String}),
        ], how="vertical_relaxed").with_columns((pl.col("score") >= threshold).alias("matched")).sort("score", descending=True)
        write_parquet(pairs, out / "pairs.parquet")
    counts = {k_: int((status == k_).sum()) for k_ in ("already_indexed", "joined", "new_group", "singleton", "unmatchable")}
    manifest = {
        "job": "dedupe_against",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": {"catalog": str(Path(catalog).resolve()), "id_col": cat.id_col, "text_cols": list(cat.text_cols), "image_col": cat.image_col},
        "index": {"dir": str(Path(index).resolve()), "n": len(idx.ids), "factory": idx.manifest.get("factory"), "vectors": vectors, "kept_groups": groups_frame is not None, "kept_titles": idx.texts is not None},
        "model": emb.manifest.get("model"),
        "matching": {"k": cfg.k, "method": cfg.method, "threshold": threshold, "lexical": lexical, "weights": asdict(cfg.weights)},
        "counts": {"rows": n, **counts, "rows_with_also_matches": sum(bool(x) for x in also), "new_group_ids": int(len(np.unique(inc.group_id[~inc.joined]))) if len(fresh) else 0},
        "timings_s": {**timer.seconds, "total": round(time.perf_counter() - t_start, 3)},
        "outputs": {"groups": "groups.parquet", "pairs": "pairs.parquet"},
        "versions": _versions(),
    }
    write_json(manifest, out / MANIFEST)
    return manifest


def _passing(signals: dict[str, np.ndarray], t: ModalityThresholds, matched: np.ndarray) -> dict[str, int]:
    """Among accepted pairs, how many each signal passes on its own threshold."""
    return {name: int((ok & matched).sum()) for name, ok in passing_signals(signals, t).items()}


def _groups_frame(cat: Catalog, g: Grouping, usable: np.ndarray) -> pl.DataFrame:
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
    sizes = g.sizes
    status = np.where(~usable, "empty_text", np.where(sizes > 1, "matched", "singleton"))
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


@dataclass
class ClusterConfig(CatalogSource):
    """Settings of :func:`cluster`; every field is recorded in the manifest.

    Attributes:
        id_col, text_cols, image_col, image_root, allow_outside_root, model: as in
            :class:`EmbedConfig` (used when the source is a catalog).
        vectors: ``text``, ``image`` or ``fused``; ``None``: fused when the embeddings have
            images, else text.
        hdbscan: HDBSCAN mode and parameters.
        gold: a file with gold labels (default: the catalog itself); gold_col: its label
            column; gold_id_col: its id column; singleton_clusters: labels that mean "no
            product" (each such row its own cluster, as WDC's 2432).
        top_terms, exemplars: per-cluster summary sizes.
        flat_max: exact (Flat) kNN search below this many rows (``knn`` mode).
    """

    vectors: str | None = None
    hdbscan: HdbscanSettings = field(default_factory=HdbscanSettings)
    gold: Path | None = None
    gold_col: str | None = None
    gold_id_col: str | None = None
    singleton_clusters: tuple[str, ...] = ()
    top_terms: int = 8
    exemplars: int = 5
    flat_max: int = FLAT_MAX


def _cluster_metrics(labels: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    """ARI, NMI, pairwise and B-cubed P/R/F1 with each noise row its own cluster, plus the
    noise fraction and ARI/NMI over clustered rows only."""
    m = cluster_metrics(noise_as_singletons(labels), gold).as_dict()
    kept = labels >= 0
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    m["noise_fraction"] = round(float(1.0 - kept.mean()) if len(labels) else 0.0, 4)
    if kept.sum() >= 2:
        m["clustered_rows_ari"] = round(float(adjusted_rand_score(gold[kept], labels[kept])), 4)
        m["clustered_rows_nmi"] = round(float(normalized_mutual_info_score(gold[kept], labels[kept])), 4)
    return m


def cluster(source: str | Path, out: str | Path, cfg: ClusterConfig | None = None) -> dict[str, Any]:
    """HDBSCAN product clusters of a catalog (or an embeddings directory) into the run
    directory ``out``.

    Mode (``cfg.hdbscan.mode``): ``pca`` clusters PCA-reduced vectors, ``knn`` the sparse kNN
    distance graph from an eclip index cached in ``out/index``; ``auto`` picks ``knn`` from
    :data:`eclip.cluster.KNN_MODE_MIN_ROWS` rows (see :mod:`eclip.cluster.hdbscan_modes`).

    Writes ``clusters.parquet`` (id, cluster_id with -1 for noise, probability,
    outlier_score, status; every input row once; rows without the chosen vectors get status
    ``no_vector`` and cluster -1), ``cluster_summary.parquet`` (cluster_id, size, medoid_id,
    medoid_title, exemplar_ids, top_terms by class-based TF-IDF, mean_probability, cohesion)
    and ``manifest.json`` (with ARI, NMI, B-cubed and the noise fraction when gold labels
    are given).

    Returns:
        The manifest.

    Raises:
        CatalogError, ModelError: bad input. RunDirError: the embeddings lack the vectors.
        GoldError: bad gold labels. EclipError: bad settings or fewer than 2 rows.
    """
    cfg = cfg or ClusterConfig()
    cfg.hdbscan.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timer, t_start = _Timer(), time.perf_counter()
    emb_dir, emb, modality, _, present = _row_vectors(source, out, cfg, cfg.vectors, timer)
    _, x, ids, texts, _ = _index_source(emb_dir, modality, emb)
    all_ids = emb.ids
    rows = np.flatnonzero(present)  # the rows `x` holds, as _index_source picked them
    if len(x) < 2:
        raise EclipError(f"{source}: {len(x)} row(s) have {modality} vectors; clustering needs at least 2.")
    texts = texts if texts is not None else [""] * len(ids)
    mode = cfg.hdbscan.resolve_mode(len(x))
    index_info: dict[str, Any] = {}
    with timer("hdbscan"):
        if mode == "pca":
            with console.status(f"HDBSCAN on {len(x):,} rows (PCA to {cfg.hdbscan.pca_dim} dims)"):
                res = cluster_pca(x, cfg.hdbscan)
        else:
            k = min(cfg.hdbscan.neighbours, len(x) - 1)
            scores, nn, index_info = _knn_table(x, np.arange(len(x)), fingerprint(emb.key, modality, "cluster"), k, cfg.flat_max, out / "index" / modality)
            with console.status(f"HDBSCAN on the {k}-NN graph of {len(x):,} rows"):
                res = cluster_knn(scores, nn, cfg.hdbscan)
    with timer("summary"):
        terms = class_tfidf_terms(texts, res.labels, cfg.top_terms)
        reps = medoids(x, res.labels, res.probability, cfg.exemplars)
        member = res.labels >= 0
        sizes = np.bincount(res.labels[member]).astype(np.int64)  # clusters are numbered 0..c-1
        mean_prob = np.bincount(res.labels[member], weights=res.probability[member]) / np.maximum(sizes, 1)
        summary = pl.DataFrame(
            {
                "cluster_id": np.arange(len(sizes), dtype=np.int64),
                "size": sizes.astype(np.int64),
                "medoid_id": [ids[reps[c][0]] for c in range(len(sizes))],
                "medoid_title": [texts[reps[c][0]] for c in range(len(sizes))],
                "exemplar_ids": [[ids[i] for i in reps[c][1]] for c in range(len(sizes))],
                "top_terms": [terms.get(c, []) for c in range(len(sizes))],
                "mean_probability": mean_prob.astype(np.float32),
                "cohesion": np.array([reps[c][2] for c in range(len(sizes))], dtype=np.float32),
            },
            schema={"cluster_id": pl.Int64, "size": pl.Int64, "medoid_id": pl.String, "medoid_title": pl.String, "exemplar_ids": pl.List(pl.String), "top_terms": pl.List(pl.String), "mean_probability": pl.Float32, "cohesion": pl.Float32},
        )
    n = len(all_ids)
    cluster_id = np.full(n, -1, dtype=np.int64)
    prob = np.zeros(n, dtype=np.float32)
    outlier = np.ones(n, dtype=np.float32)
    cluster_id[rows], prob[rows], outlier[rows] = res.labels, res.probability, res.outlier_score
    status = np.full(n, "no_vector", dtype=object)
    status[rows] = np.where(res.labels >= 0, "clustered", "noise")
    clusters = pl.DataFrame(
        {"id": all_ids, "cluster_id": cluster_id, "probability": prob, "outlier_score": outlier, "status": status.tolist()},
        schema={"id": pl.String, "cluster_id": pl.Int64, "probability": pl.Float32, "outlier_score": pl.Float32, "status": pl.String},
    )
    metrics = None
    gold_path = cfg.gold or emb.manifest.get("catalog")
    if cfg.gold_col is not None or cfg.gold is not None:
        gold = load_gold(gold_path, all_ids, cfg.gold_id_col or emb.manifest.get("id_col", cfg.id_col), cfg.gold_col, cfg.singleton_clusters)
        metrics = _cluster_metrics(cluster_id, gold)
        majority = pl.DataFrame({"c": cluster_id, "g": gold}).filter(pl.col("c") >= 0).group_by("c", "g").len().sort(["c", "len"], descending=[False, True]).group_by("c", maintain_order=True).first()
        summary = summary.join(majority.select(pl.col("c").alias("cluster_id"), pl.col("len").alias("gold_majority_rows")), on="cluster_id", how="left").with_columns(
            (pl.col("gold_majority_rows") / pl.col("size")).cast(pl.Float32).alias("gold_purity")
        )
    with timer("write"):
        write_parquet(clusters, out / "clusters.parquet")
        write_parquet(summary, out / "cluster_summary.parquet")
    manifest = {
        "job": "cluster",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": cfg.inputs(source, emb),
        "model": emb.manifest.get("model"),
        "embeddings": {"dir": str(Path(emb_dir).resolve()), "key": emb.key, "vectors": modality, "dim": int(x.shape[1])},
        "clustering": {"algorithm": "hdbscan", **asdict(cfg.hdbscan), "mode": mode, "mode_asked": cfg.hdbscan.mode, "knn_mode_min_rows": KNN_MODE_MIN_ROWS, "graph_components": res.components, "index": index_info},
        "counts": {
            "rows": n,
            "clustered_rows": int((cluster_id >= 0).sum()),
            "noise_rows": int((status == "noise").sum()),
            "no_vector_rows": int((status == "no_vector").sum()),
            "clusters": int(len(sizes)),
            "largest_cluster": int(sizes.max()) if len(sizes) else 0,
            "median_cluster_size": float(np.median(sizes)) if len(sizes) else 0.0,
        },
        "metrics": metrics,
        "gold": {"file": str(gold_path), "column": cfg.gold_col, "singleton_clusters": list(cfg.singleton_clusters)} if metrics else None,
        "timings_s": {**timer.seconds, "total": round(time.perf_counter() - t_start, 3)},
        "outputs": {"clusters": "clusters.parquet", "summary": "cluster_summary.parquet"},
        "versions": {**_versions(), **{p: version(p) for p in ("hdbscan",)}},
    }
    write_json(manifest, out / MANIFEST)
    return manifest


def _row_vectors(source: str | Path, out: Path, src: CatalogSource, vectors: str | None, timer: _Timer) -> tuple[Path, Embeddings, str, np.ndarray, np.ndarray]:
    """Embed ``source`` (or read it, when it is an embeddings directory): ``(emb_dir, emb,
    modality, x, present)`` with ``x`` the ``(n, d)`` float32 vectors of every row and
    ``present`` the ``(n,)`` bool rows that have them."""
    with timer("embed"):
        emb_dir = _embeddings_dir(source, out / "embeddings", src.embed_config())
    with timer("load_embeddings"):
        emb = load_embeddings(emb_dir)
    modality = vectors or ("fused" if emb.image is not None else "text")
    try:
        x, present = emb.vectors(modality)
    except KeyError:
        raise EclipError(f"--vectors {modality!r} is not known; choose text, image or fused.") from None
    if x is None:
        raise RunDirError(f"{emb_dir} has no {modality!r} vectors (it has {', '.join(emb.manifest.get('arrays', []))}); image vectors need an open_clip model and --image-col.")
    return Path(emb_dir), emb, modality, x, present


def _label_encoder(emb: Embeddings, emb_dir: Path, spec: str) -> Any:
    """The text encoder that embeds label prompts: ``spec``'s model, which must be the one
    that made ``emb`` (label and row vectors must share one space).

    Raises:
        ModelError: bad spec. RunDirError: ``spec`` names another model than the embeddings'.
    """
    encoder = load_encoder(spec)
    made_by = emb.manifest.get("model", {})
    if made_by and encoder.describe() != made_by:
        raise RunDirError(
            f"{emb_dir} was embedded with {made_by.get('name')} ({made_by.get('kind')}, weights {made_by.get('weights')}), "
            f"but --model {spec} is {encoder.describe().get('name')}; pass --model naming the model that made these embeddings."
        )
    return encoder


@dataclass
class ClassifyConfig(CatalogSource):
    """Settings of :func:`classify`; every field is recorded in the manifest.

    Attributes:
        id_col, text_cols, image_col, image_root, allow_outside_root, model: as in
            :class:`EmbedConfig` (``model`` also embeds the label prompts).
        labels: a labels file (one per line, or ``A > B > C`` taxonomy paths) for zero-shot.
        train: a labelled table (``id_col`` + ``label_col``) to fit a linear probe on; its
            rows are looked up in the source, or embedded when they are not there.
        label_col: the class column of ``train``. train_fraction: share of its labelled rows
            used (random, ``seed``), the rest left for evaluation.
        probe: a probe file saved by an earlier run (``probe.npz``).
        prior_weight: with ``labels`` and a probe, the zero-shot prior's weight ``w`` in
            ``softmax(w log p_zero_shot + (1 - w) log p_probe)``.
        vectors: ``text``, ``image`` or ``fused``; ``None``: fused with images, else text.
        k: top labels kept per row. min_score: below it, ``unknown`` (cosine for zero-shot,
            probability with a probe). logit_scale: zero-shot softmax sharpness.
        templates: prompt templates (``{}`` = the label).
        hierarchy: ``levels`` (a taxonomy top-down, level by level) or ``leaves`` (one
            choice among its leaves).
        probe_c: the probe's inverse regularisation ``C``; ``None``: chosen by cross-validated
            macro-F1 (:data:`eclip.classify.probe.C_GRID`). cv_folds: cross-validation folds.
    """

    labels: Path | None = None
    train: Path | None = None
    label_col: str | None = None
    train_fraction: float = 1.0
    probe: Path | None = None
    prior_weight: float = 0.2
    vectors: str | None = None
    k: int = 5
    min_score: float | None = None
    logit_scale: float = DEFAULT_LOGIT_SCALE
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    hierarchy: str = "levels"
    probe_c: float | None = None
    cv_folds: int = 5
    seed: int = 0


def _train_rows(cfg: ClassifyConfig, emb: Embeddings, modality: str, x: np.ndarray, present: np.ndarray, out: Path, timer: _Timer) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, Any]]:
    """Vectors and labels of the probe's training rows: ``(x_train, y, in_train, info)``;
    ``in_train`` marks the source rows used (all false when ``train`` is another catalog)."""
    assert cfg.train is not None and cfg.label_col is not None
    labelled = load_class_labels(cfg.train, cfg.id_col, cfg.label_col)
    ids = list(labelled)
    if cfg.train_fraction < 1.0:
        rng = np.random.default_rng(cfg.seed)
        ids = [ids[i] for i in np.sort(rng.permutation(len(ids))[: max(2, int(round(cfg.train_fraction * len(ids))))])]
    pos = {x_: i for i, x_ in enumerate(emb.ids)}
    in_train = np.zeros(len(emb.ids), dtype=bool)
    if all(i in pos for i in ids):
        rows = np.array([pos[i] for i in ids], dtype=np.int64)
        rows = rows[present[rows]]
        in_train[rows] = True
        x_train, y = x[rows], [labelled[emb.ids[r]] for r in rows]
        where = "source rows"
    else:  # another catalog: embed it with the same model and columns
        ecfg = cfg.embed_config(emb.manifest.get("settings", {}).get("text_cols") or cfg.text_cols)
        with timer("embed_train"):
            tdir = _embeddings_dir(cfg.train, out / "train_embeddings", ecfg)
            temb = load_embeddings(tdir)
        if temb.manifest.get("model") != emb.manifest.get("model"):
            raise RunDirError(f"{cfg.train} was embedded with another model than the source; embed both with the same --model.")
        tx, tpresent = temb.vectors(modality)
        tpos = {x_: i for i, x_ in enumerate(temb.ids)}
        rows = np.array([tpos[i] for i in ids if i in tpos], dtype=np.int64)
        rows = rows[tpresent[rows]]
        x_train, y = tx[rows], [labelled[temb.ids[r]] for r in rows]
        where = "another catalog"
    if len(y) < 2:
        raise EclipError(f"{cfg.train}: only {len(y)} labelled row(s) have vectors; a probe needs more.")
    info = {"file": str(Path(cfg.train).resolve()), "label_col": cfg.label_col, "labelled_rows": len(labelled), "train_rows": len(y), "train_fraction": cfg.train_fraction, "rows_from": where}
    return x_train, y, in_train, info


def _predictions_frame(ids: list[str], present: np.ndarray, pred: Predictions, in_train: np.ndarray) -> pl.DataFrame:
    n = len(ids)
    rows = np.flatnonzero(present)
    label = np.full(n, UNKNOWN, dtype=object)
    label[rows] = pred.label
    status = np.full(n, "no_vector", dtype=object)
    status[rows] = np.where(pred.depth > 0, "predicted", "unknown")
    def spread(a: np.ndarray, dtype: Any, fill: Any) -> np.ndarray:
        full = np.full(n, fill, dtype=dtype)
        full[rows] = a
        return full
    tops: list[list[str]] = [[] for _ in range(n)]
    top_sc: list[list[float]] = [[] for _ in range(n)]
    for j, r in enumerate(rows):
        tops[r] = pred.top_labels[j]
        top_sc[r] = [float(v) for v in pred.top_scores[j][: len(pred.top_labels[j])]]
    return pl.DataFrame(
        {
            "id": ids,
            "label": label.tolist(),
            "score": spread(pred.score, np.float32, np.nan),
            "probability": spread(pred.probability, np.float32, np.nan),
            "depth": spread(pred.depth, np.int64, 0),
            "top_labels": tops,
            "top_scores": top_sc,
            "status": status.tolist(),
            "in_train": in_train,
        },
        schema={"id": pl.String, "label": pl.String, "score": pl.Float32, "probability": pl.Float32, "depth": pl.Int64, "top_labels": pl.List(pl.String), "top_scores": pl.List(pl.Float32), "status": pl.String, "in_train": pl.Boolean},
    )


def classify(source: str | Path, out: str | Path, cfg: ClassifyConfig | None = None) -> dict[str, Any]:
    """Classify every row of a catalog (or embeddings directory) into labels.

    * ``labels`` only: zero-shot (:mod:`eclip.classify.zeroshot`): prompt-ensembled label
      vectors, taxonomies level by level.
    * ``train`` (+ ``label_col``) or ``probe``: a logistic-regression probe
      (:mod:`eclip.classify.probe`); a fitted probe is saved as ``out/probe.npz`` with its
      cross-validated accuracy and macro-F1.
    * both: zero-shot prior times probe over the label file's leaves
      (:func:`eclip.classify.combine`).

    Writes ``predictions.parquet`` (every row once: id, label, score, probability, depth,
    top_labels, top_scores, status ``predicted`` / ``unknown`` / ``no_vector``, in_train) and
    ``manifest.json``.

    Returns:
        The manifest.

    Raises:
        LabelsError: bad labels file. CatalogError, ModelError: bad input or model.
        GoldError: bad training labels. RunDirError: embeddings or probe of another model.
        EclipError: bad settings (no labels and no probe, prior weight outside [0, 1]).
    """
    cfg = cfg or ClassifyConfig()
    if cfg.labels is None and cfg.train is None and cfg.probe is None:
        raise EclipError("give --labels FILE (zero-shot), --train LABELLED --label-col COL (linear probe), or --probe FILE.")
    if cfg.train is not None and cfg.label_col is None:
        raise EclipError("--train needs --label-col, the column holding each labelled row's class.")
    if cfg.train is not None and cfg.probe is not None:
        raise EclipError("give --train (fit a new probe) or --probe (use a saved one), not both.")
    if cfg.hierarchy not in ("levels", "leaves"):
        raise EclipError(f"--hierarchy {cfg.hierarchy!r} is not known; use levels or leaves.")
    if not 0.0 <= cfg.prior_weight <= 1.0 or not 0.0 < cfg.train_fraction <= 1.0:
        raise EclipError("--prior-weight must be in [0, 1] and --train-fraction in (0, 1].")
    taxonomy = parse_labels(cfg.labels) if cfg.labels is not None else None  # fail before embedding
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timer, t_start = _Timer(), time.perf_counter()
    emb_dir, emb, modality, x_all, present = _row_vectors(source, out, cfg, cfg.vectors, timer)
    x = np.ascontiguousarray(x_all[present])
    described = emb.manifest.get("model", {})
    probe, probe_info, in_train = None, None, np.zeros(len(emb.ids), dtype=bool)
    if cfg.train is not None:
        x_train, y, in_train, train_info = _train_rows(cfg, emb, modality, x_all, present, out, timer)
        with timer("probe_fit"), console.status(f"fitting a logistic-regression probe on {len(y):,} rows ({cfg.cv_folds}-fold CV)"):
            probe, cv = fit_probe(x_train, y, c=cfg.probe_c, folds=cfg.cv_folds, seed=cfg.seed)
        probe.meta.update(model=described, vectors=modality)
        probe.save(out / "probe.npz")
        probe_info = {"saved": "probe.npz", "classes": len(probe.classes), "cv": cv, "train": train_info}
    elif cfg.probe is not None:
        probe = LinearProbe.load(cfg.probe)
        if probe.meta.get("model") != described or probe.meta.get("vectors") != modality:
            raise RunDirError(
                f"{cfg.probe} was fitted on {probe.meta.get('vectors')} vectors of {probe.meta.get('model', {}).get('name')}; "
                f"these are {modality} vectors of {described.get('name')}. Fit a probe on these embeddings (--train)."
            )
        probe_info = {"loaded": str(Path(cfg.probe).resolve()), "classes": len(probe.classes), "cv": probe.meta.get("cv")}
    with timer("classify"):
        if taxonomy is not None:
            encoder = _label_encoder(emb, emb_dir, cfg.model)
        if probe is None:
            with console.status(f"embedding {len(taxonomy.paths):,} labels x {len(cfg.templates)} prompts"):
                own = label_vectors(encoder.encode, [p[-1] for p in taxonomy.paths], cfg.templates)
            if cfg.hierarchy == "leaves":  # one flat choice among the leaves, named by their paths
                keep = [i for i, p in enumerate(taxonomy.paths) if p in set(taxonomy.leaves)]
                pred = classify_taxonomy(x, Taxonomy.flat([taxonomy.name(taxonomy.paths[i]) for i in keep]), own[keep], cfg.k, cfg.min_score, cfg.logit_scale)
            else:
                pred = classify_taxonomy(x, taxonomy, taxonomy_vectors(taxonomy, own), cfg.k, cfg.min_score, cfg.logit_scale)
            how = "zero-shot"
        elif taxonomy is None:
            proba = probe.proba(x)
            pred = flat_predictions(probe.classes, proba, proba, cfg.k, cfg.min_score)
            how = "probe"
        else:
            leaves = [taxonomy.name(p) for p in taxonomy.leaves]
            names = leaves if any(n_ in probe.classes for n_ in leaves) else [p[-1] for p in taxonomy.leaves]
            leaf_vecs = label_vectors(encoder.encode, [p[-1] for p in taxonomy.leaves], cfg.templates)
            zs = softmax(cfg.logit_scale * (x @ leaf_vecs.T))
            proba = combine(zs, align_probe(probe, probe.log_proba(x), names), cfg.prior_weight)
            pred = flat_predictions(names, proba, proba, cfg.k, cfg.min_score)
            how = "zero-shot prior + probe"
    frame = _predictions_frame(emb.ids, present, pred, in_train)
    with timer("write"):
        write_parquet(frame, out / "predictions.parquet")
    counts = frame["status"].value_counts()
    status_counts = dict(zip(counts["status"].to_list(), counts["count"].to_list()))
    top = frame.filter(pl.col("status") == "predicted")["label"].value_counts(sort=True).head(20)
    manifest = {
        "job": "classify",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": cfg.inputs(source, emb),
        "model": described,
        "embeddings": {"dir": str(emb_dir.resolve()), "key": emb.key, "vectors": modality, "dim": int(x_all.shape[1])},
        "method": how,
        "labels": {"file": str(Path(cfg.labels).resolve()), "labels": len(taxonomy.paths), "leaves": len(taxonomy.leaves), "depth": taxonomy.depth, "templates": list(cfg.templates), "logit_scale": cfg.logit_scale} if taxonomy else None,
        "probe": probe_info,
        "settings": {"k": cfg.k, "min_score": cfg.min_score, "hierarchy": cfg.hierarchy, "prior_weight": cfg.prior_weight if how == "zero-shot prior + probe" else None, "seed": cfg.seed},
        "counts": {"rows": len(emb.ids), **{s_: int(status_counts.get(s_, 0)) for s_ in ("predicted", "unknown", "no_vector")}, "in_train": int(in_train.sum())},
        "top_labels": dict(zip(top["label"].to_list(), top["count"].to_list())),
        "timings_s": {**timer.seconds, "total": round(time.perf_counter() - t_start, 3)},
        "outputs": {"predictions": "predictions.parquet", **({"probe": "probe.npz"} if cfg.train is not None else {})},
        "versions": _versions(),
    }
    write_json(manifest, out / MANIFEST)
    return manifest


@dataclass
class AdultFilterConfig(CatalogSource):
    """Settings of :func:`filter_adult`; every field is recorded in the manifest.

    Attributes:
        id_col, text_cols, image_col, image_root, allow_outside_root, model: as in
            :class:`EmbedConfig`.
        vectors: ``text``, ``image`` or ``fused``; ``None``: fused with images, else text.
        threshold: flag rows whose adult score reaches it; ``None``: calibrated when
            ``calibrate`` is given, else :data:`eclip.classify.DEFAULT_THRESHOLD`.
        calibrate: a labelled table (``id_col`` + ``label_col``); label_col: its column;
            positive: the value meaning "adult" (default: ``true`` / ``1`` / ``yes``).
        target_precision: the calibrated threshold is the lowest reaching this precision.
        holdout: share of the labelled rows kept out of calibration (random, ``seed``) and
            used to measure the chosen threshold.
        fit_probe: few-shot mode (needs ``calibrate``): fit a logistic-regression probe on
            the calibration rows' vectors plus their zero-shot log-odds; the score becomes the
            probe's probability and the threshold is calibrated on its out-of-fold scores.
            Saved as ``out/adult_probe.npz``.
        probe: an ``adult_probe.npz`` from an earlier run to score with (and its threshold,
            unless ``threshold`` or ``calibrate`` is given).
        logit_scale, templates: zero-shot scoring (see :mod:`eclip.classify.adult`).
    """

    vectors: str | None = None
    threshold: float | None = None
    calibrate: Path | None = None
    label_col: str | None = None
    positive: str | None = None
    target_precision: float = 0.9
    holdout: float = 0.0
    seed: int = 0
    fit_probe: bool = False
    probe: Path | None = None
    logit_scale: float = ADULT_LOGIT_SCALE
    templates: tuple[str, ...] = DEFAULT_TEMPLATES


_TRUE = ("true", "1", "yes", "y", "t")


def _adult_proba(probe: LinearProbe, features: np.ndarray) -> np.ndarray:
    """``(n,)`` float32 probability of the adult class under an adult probe."""
    return probe.proba(features)[:, probe.classes.index("adult")]


def binary_gold(labels: dict[str, str], ids: list[str], positive: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, y)``: positions in ``ids`` of the labelled rows and their ``(m,)`` bool
    labels (``label == positive``; without ``positive``: true/1/yes).

    Raises:
        GoldError: no labelled id is among ``ids``.
    """
    pos = {x_: i for i, x_ in enumerate(ids)}
    pairs = [(pos[i], v) for i, v in labels.items() if i in pos]
    if not pairs:
        raise GoldError(f"none of the {len(labels):,} labelled ids is in the run (ids look like {next(iter(labels))!r} vs {ids[0]!r}); check --id-col.")
    rows = np.array([r for r, _ in pairs], dtype=np.int64)
    if positive is None:
        y = np.array([v.lower() in _TRUE for _, v in pairs])
    else:
        y = np.array([v == positive for _, v in pairs])
    return rows, y


def filter_adult(source: str | Path, out: str | Path, cfg: AdultFilterConfig | None = None) -> dict[str, Any]:
    """Score every row for adult / sexual-wellness content and flag it
    (:mod:`eclip.classify.adult`).

    Writes ``flagged.parquet`` (every row once: id, adult_score in [0, 1] (the zero-shot
    score, or the probe's probability), zero_shot_score, flagged, nearest_concept, status
    ``scored`` / ``no_vector``) and ``manifest.json`` (the threshold
    and where it came from, the calibration and its held-out check, counts and the most
    flagged concepts).

    Returns:
        The manifest.

    Raises:
        CatalogError, ModelError: bad input or model. GoldError: bad calibration labels.
        EclipError: bad settings, or calibration rows without positives or negatives.
    """
    cfg = cfg or AdultFilterConfig()
    if cfg.calibrate is not None and cfg.label_col is None:
        raise EclipError("--calibrate needs --label-col, the column saying which labelled rows are adult.")
    if cfg.fit_probe and (cfg.calibrate is None or cfg.probe is not None):
        raise EclipError("--fit-probe fits on the labelled rows of --calibrate (and replaces --probe); give --calibrate, not --probe.")
    if not 0.0 <= cfg.holdout < 1.0 or not 0.0 < cfg.target_precision <= 1.0:
        raise EclipError("--holdout must be in [0, 1) and --target-precision in (0, 1].")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timer, t_start = _Timer(), time.perf_counter()
    emb_dir, emb, modality, x_all, present = _row_vectors(source, out, cfg, cfg.vectors, timer)
    encoder = _label_encoder(emb, emb_dir, cfg.model)
    n = len(emb.ids)
    with timer("score"):
        concepts = concept_vectors(encoder.encode, cfg.templates)
        score = np.zeros(n, dtype=np.float32)
        log_odds = np.zeros(n, dtype=np.float32)
        nearest = np.full(n, -1, dtype=np.int64)
        score[present], log_odds[present], nearest[present] = adult_scores(np.ascontiguousarray(x_all[present]), concepts, len(ADULT_CONCEPTS), cfg.logit_scale)
    names = list(ADULT_CONCEPTS) + list(GENERAL_CONCEPTS)
    # the probe's input: the vectors plus the zero-shot log-odds (built only when a probe is used)
    features = np.hstack([x_all, np.clip(log_odds, -30, 30)[:, None]]) if (cfg.fit_probe or cfg.probe is not None) else None
    zero_shot = score.copy()
    threshold, source_of_threshold, calibration, probe_info = cfg.threshold, "given", None, None
    if cfg.probe is not None:
        probe = LinearProbe.load(cfg.probe)
        if probe.meta.get("model") != emb.manifest.get("model") or probe.meta.get("vectors") != modality or probe.meta.get("task") != "adult":
            raise RunDirError(f"{cfg.probe} is not an adult probe for {modality} vectors of {emb.manifest.get('model', {}).get('name')}; fit one here with --calibrate ... --fit-probe.")
        score = np.where(present, _adult_proba(probe, features), 0.0).astype(np.float32)
        probe_info = {"loaded": str(Path(cfg.probe).resolve()), "cv": probe.meta.get("cv")}
        if threshold is None and cfg.calibrate is None:
            threshold, source_of_threshold = float(probe.meta["threshold"]), "probe"
    if cfg.calibrate is not None:
        rows, y = binary_gold(load_class_labels(cfg.calibrate, cfg.id_col, cfg.label_col), emb.ids, cfg.positive)
        keep = present[rows]
        rows, y = rows[keep], y[keep]
        cal = np.ones(len(rows), dtype=bool)
        if cfg.holdout > 0:
            cal[np.random.default_rng(cfg.seed).permutation(len(rows))[: int(round(cfg.holdout * len(rows)))]] = False
        cal_scores = score[rows[cal]]
        if cfg.fit_probe:
            with timer("probe_fit"), console.status(f"fitting the adult probe on {int(cal.sum()):,} labelled rows"):
                probe, cv = fit_probe(features[rows[cal]], np.where(y[cal], "adult", "other").tolist(), seed=cfg.seed)
            cal_scores = cv["oof_proba"][:, probe.classes.index("adult")] if "oof_proba" in cv else _adult_proba(probe, features[rows[cal]])
            score = np.where(present, _adult_proba(probe, features), 0.0).astype(np.float32)
        point = threshold_for_precision(cal_scores, y[cal], cfg.target_precision)
        if cfg.fit_probe:
            probe.meta.update(task="adult", model=emb.manifest.get("model"), vectors=modality, logit_scale=cfg.logit_scale, threshold=point.threshold, target_precision=cfg.target_precision)
            probe.save(out / "adult_probe.npz")
            probe_info = {"saved": "adult_probe.npz", "features": "vectors + zero-shot log-odds", "cv": probe.meta["cv"], "threshold_from": "out-of-fold probabilities"}
        calibration = {
            "file": str(Path(cfg.calibrate).resolve()), "label_col": cfg.label_col, "positive": cfg.positive, "target_precision": cfg.target_precision,
            "rows": int(cal.sum()), "positives": int(y[cal].sum()), "on_calibration_rows": point.as_dict(),
        }
        if not point.met_target:
            console.print(f"[yellow]no threshold reaches precision {cfg.target_precision} on the calibration rows; using the most precise one ({point.precision:.3f}).[/]")
        if cfg.threshold is None:
            threshold, source_of_threshold = point.threshold, "calibrated"
        if cfg.holdout > 0:
            held = ~cal
            calibration["holdout"] = {
                "fraction": cfg.holdout, "seed": cfg.seed, "rows": int(held.sum()), "positives": int(y[held].sum()),
                "at_calibrated_threshold": at_threshold(score[rows[held]], y[held], point.threshold).as_dict(),
                **binary_metrics(score[rows[held]], y[held], cfg.target_precision),
            }
            if cfg.fit_probe or cfg.probe is not None:
                calibration["holdout"]["zero_shot"] = binary_metrics(zero_shot[rows[held]], y[held], cfg.target_precision)
    if threshold is None:
        threshold, source_of_threshold = ADULT_THRESHOLD, "default"
    flagged = present & (score >= threshold)
    frame = pl.DataFrame(
        {
            "id": emb.ids,
            "adult_score": np.where(present, score, np.nan).astype(np.float32),
            "zero_shot_score": np.where(present, zero_shot, np.nan).astype(np.float32),
            "flagged": flagged,
            "nearest_concept": [names[i] if i >= 0 else None for i in nearest],
            "status": np.where(present, "scored", "no_vector").tolist(),
        },
        schema={"id": pl.String, "adult_score": pl.Float32, "zero_shot_score": pl.Float32, "flagged": pl.Boolean, "nearest_concept": pl.String, "status": pl.String},
    )
    with timer("write"):
        write_parquet(frame, out / "flagged.parquet")
    top = frame.filter(pl.col("flagged"))["nearest_concept"].value_counts(sort=True).head(10)
    manifest = {
        "job": "filter-adult",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": cfg.inputs(source, emb),
        "model": emb.manifest.get("model"),
        "embeddings": {"dir": str(emb_dir.resolve()), "key": emb.key, "vectors": modality},
        "threshold": {"value": float(threshold), "source": source_of_threshold, "default": ADULT_THRESHOLD},
        "calibration": calibration,
        "probe": probe_info,
        "concepts": {"adult": list(ADULT_CONCEPTS), "general": list(GENERAL_CONCEPTS), "templates": list(cfg.templates), "logit_scale": cfg.logit_scale},
        "summary": {
            "rows": len(emb.ids), "scored": int(present.sum()), "flagged": int(flagged.sum()), "flagged_fraction": round(float(flagged.sum() / max(1, present.sum())), 4),
            "no_vector": int((~present).sum()), "flagged_by_concept": dict(zip(top["nearest_concept"].to_list(), top["count"].to_list())),
        },
        "timings_s": {**timer.seconds, "total": round(time.perf_counter() - t_start, 3)},
        "outputs": {"flagged": "flagged.parquet", **({"probe": "adult_probe.npz"} if cfg.fit_probe else {})},
        "versions": _versions(),
    }
    write_json(manifest, out / MANIFEST)
    return manifest


def evaluate_predictions(
    path: str | Path, gold_path: str | Path, gold_id_col: str = "id", gold_col: str | None = None, positive: str | None = None, precision_target: float = 0.9
) -> dict[str, Any]:
    """Score ``predictions.parquet`` (``eclip classify``) or ``flagged.parquet`` (``eclip
    filter-adult``) against labelled rows; writes ``eval.json`` beside it.

    Predictions: accuracy, macro-F1 and a confusion summary over the labelled rows not used
    to train the probe (``in_train``); ``unknown`` and ``no_vector`` rows count as wrong.
    Flags: PR-AUC, ROC-AUC, recall at ``precision_target`` and precision/recall of the flags
    as written, over the labelled rows that were scored.

    Raises:
        RunDirError: not a predictions or flagged file. GoldError: bad gold file or ids.
    """
    p = Path(path)
    if not p.exists():
        raise RunDirError(f"{p}: no such file; run `eclip classify` or `eclip filter-adult` first.")
    frame = pl.read_parquet(p)
    if gold_col is None:
        raise GoldError("give --gold-col, the gold class column (for the adult filter, with --positive VALUE).")
    labels = load_class_labels(gold_path, gold_id_col, gold_col)
    ids = frame["id"].cast(pl.String).to_list()
    result: dict[str, Any] = {"file": str(p), "gold": str(gold_path), "gold_col": gold_col}
    if "adult_score" in frame.columns:
        rows, y = binary_gold(labels, ids, positive)
        scored = frame["status"].to_numpy()[rows] == "scored"
        rows, y = rows[scored], y[scored]
        score = frame["adult_score"].to_numpy()[rows]
        result["task"] = "filter"
        result["positive"] = positive
        result["metrics"] = binary_metrics(score, y, precision_target)
        flag = frame["flagged"].to_numpy()[rows]
        tp = int((flag & y).sum())
        result["metrics"]["flags_as_written"] = {"flagged": int(flag.sum()), "precision": round(tp / max(1, int(flag.sum())), 4), "recall": round(tp / max(1, int(y.sum())), 4)}
    elif {"label", "status"} <= set(frame.columns):
        pos = {x_: i for i, x_ in enumerate(ids)}
        rows = np.array([pos[i] for i in labels if i in pos], dtype=np.int64)
        if not len(rows):
            raise GoldError(f"{gold_path}: none of its ids is in {p}; check --gold-id-col.")
        in_train = frame["in_train"].to_numpy()[rows] if "in_train" in frame.columns else np.zeros(len(rows), dtype=bool)
        rows = rows[~in_train]
        if not len(rows):
            raise GoldError(f"{gold_path}: every labelled row trained the probe; evaluate on other rows.")
        pred = [v if s == "predicted" else UNKNOWN for v, s in zip(frame["label"].to_numpy()[rows], frame["status"].to_numpy()[rows])]
        gold = [labels[ids[r]] for r in rows]
        result["task"] = "classification"
        result["excluded_training_rows"] = int(in_train.sum())
        result["metrics"] = classification_metrics(pred, gold)
    else:
        raise RunDirError(f"{p}: neither predictions (eclip classify) nor flags (eclip filter-adult); for groups use `eclip eval groups.parquet`.")
    write_json(result, p.parent / "eval.json")
    return result


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


__all__ = ["AdultFilterConfig", "ClassifyConfig", "classify", "evaluate_predictions", "filter_adult", "DEFAULT_METHOD", "DEFAULT_THRESHOLD", "ClusterConfig", "DedupeConfig", "cluster", "EmbedConfig", "embed", "train", "EclipError", "dedupe", "evaluate", "read_calibration"]
