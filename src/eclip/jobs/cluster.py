"""The ``cluster`` job: HDBSCAN product clusters with per-cluster summaries and metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.checks import Vectors, check_choice, check_range
from eclip.cluster import KNN_MODE_MIN_ROWS, HdbscanSettings, cluster_knn, cluster_pca
from eclip.cluster.summary import summary_frame, with_gold_purity
from eclip.errors import EclipError
from eclip.evaluation import cluster_metrics_with_noise, load_gold
from eclip.index import FLAT_MAX, cached_self_join
from eclip.jobs.run import created, start_run, versions, write_manifest
from eclip.jobs.source import CatalogSource, index_source, row_vectors
from eclip.progress import console
from eclip.rundir import fingerprint, write_parquet


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

    vectors: Vectors | None = None
    hdbscan: HdbscanSettings = field(default_factory=HdbscanSettings)
    gold: Path | None = None
    gold_col: str | None = None
    gold_id_col: str | None = None
    singleton_clusters: tuple[str, ...] = ()
    top_terms: int = 8
    exemplars: int = 5
    flat_max: int = FLAT_MAX

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "vectors", Vectors, optional=True)
        check_range(self, "top_terms", 0)
        check_range(self, "exemplars", 0)
        check_range(self, "flat_max", 0)


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
    out, timer = start_run(out)
    emb_dir, emb, modality, _, present = row_vectors(source, out, cfg, cfg.vectors, timer)
    _, x, ids, texts, _ = index_source(emb_dir, modality, emb)
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
            scores, nn, index_info = cached_self_join(
                x,
                np.arange(len(x)),
                fingerprint(emb.key, modality, "cluster"),
                k,
                cfg.flat_max,
                out / "index" / modality,
            )
            with console.status(f"HDBSCAN on the {k}-NN graph of {len(x):,} rows"):
                res = cluster_knn(scores, nn, cfg.hdbscan)
    with timer("summary"):
        summary = summary_frame(x, ids, texts, res.labels, res.probability, cfg.top_terms, cfg.exemplars)
        sizes = summary["size"].to_numpy()  # clusters are numbered 0..c-1
    n = len(all_ids)
    cluster_id = np.full(n, -1, dtype=np.int64)
    prob = np.zeros(n, dtype=np.float32)
    outlier = np.ones(n, dtype=np.float32)
    cluster_id[rows], prob[rows], outlier[rows] = res.labels, res.probability, res.outlier_score
    status = np.full(n, "no_vector", dtype=object)
    status[rows] = np.where(res.labels >= 0, "clustered", "noise")
    clusters = pl.DataFrame(
        {
            "id": all_ids,
            "cluster_id": cluster_id,
            "probability": prob,
            "outlier_score": outlier,
            "status": status.tolist(),
        },
        schema={
            "id": pl.String,
            "cluster_id": pl.Int64,
            "probability": pl.Float32,
            "outlier_score": pl.Float32,
            "status": pl.String,
        },
    )
    metrics = None
    gold_path = cfg.gold or emb.manifest.get("catalog")
    if cfg.gold_col is not None or cfg.gold is not None:
        assert gold_path is not None  # every embeddings manifest names its catalog
        gold = load_gold(
            gold_path,
            all_ids,
            cfg.gold_id_col or emb.manifest.get("id_col", cfg.id_col),
            cfg.gold_col,
            cfg.singleton_clusters,
        )
        metrics = cluster_metrics_with_noise(cluster_id, gold)
        summary = with_gold_purity(summary, cluster_id, gold)
    with timer("write"):
        write_parquet(clusters, out / "clusters.parquet")
        write_parquet(summary, out / "cluster_summary.parquet")
    manifest = {
        "job": "cluster",
        "created": created(),
        "inputs": cfg.inputs(source, emb),
        "model": emb.manifest.get("model"),
        "embeddings": {
            "dir": str(Path(emb_dir).resolve()),
            "key": emb.key,
            "vectors": modality,
            "dim": int(x.shape[1]),
        },
        "clustering": {
            "algorithm": "hdbscan",
            **asdict(cfg.hdbscan),
            "mode": mode,
            "mode_asked": cfg.hdbscan.mode,
            "knn_mode_min_rows": KNN_MODE_MIN_ROWS,
            "graph_components": res.components,
            "index": index_info,
        },
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
        "gold": {"file": str(gold_path), "column": cfg.gold_col, "singleton_clusters": list(cfg.singleton_clusters)}
        if metrics
        else None,
        "timings_s": timer.timings(),
        "outputs": {"clusters": "clusters.parquet", "summary": "cluster_summary.parquet"},
        "versions": versions("hdbscan"),
    }
    return write_manifest(manifest, out)
