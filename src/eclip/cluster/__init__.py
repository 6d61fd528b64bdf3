"""Cluster: HDBSCAN product clusters (PCA or kNN-graph mode), their summaries and top terms."""

from eclip.cluster.hdbscan_modes import (
    KNN_MODE_MIN_ROWS,
    MODES,
    HdbscanResult,
    HdbscanSettings,
    cluster_knn,
    cluster_pca,
    knn_graph,
)

__all__ = ["KNN_MODE_MIN_ROWS", "MODES", "HdbscanResult", "HdbscanSettings", "cluster_knn", "cluster_pca", "knn_graph"]
