"""HDBSCAN in two modes: on PCA-reduced vectors, or on a sparse kNN distance graph.

HDBSCAN (Campello, Moulavi & Sander, "Density-Based Clustering Based on Hierarchical Density
Estimates", PAKDD 2013) via the ``hdbscan`` package (McInnes, Healy & Astels, JOSS 2017).

* ``pca``: the vectors are reduced with scikit-learn's PCA and clustered with Euclidean
  distance (``hdbscan``'s Boruvka KD-tree). Exact mutual-reachability over every pair, but its
  time and memory grow fast with ``n`` and with the reduced dimension.
* ``knn``: each row's ``k`` nearest neighbours (from eclip's FAISS index) become a symmetric
  sparse distance matrix, clustered with ``metric="precomputed"``. The minimum spanning tree
  is taken over the kNN graph only, the approximation used for large data in McInnes & Healy,
  "Accelerated Hierarchical Density Based Clustering" (ICDMW 2017) and in the ``hdbscan``
  documentation ("precomputed sparse distance matrices"). Disconnected parts of the graph are
  bridged at a distance larger than any kNN distance, so that they separate first.

Distances are Euclidean between L2-normalised vectors: ``sqrt(2 - 2 cos)``, in [0, 2].
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from eclip.errors import EclipError

MODES = ("auto", "pca", "knn")

#: ``auto`` uses the kNN-graph mode from this many rows on. Measured by ``bench/cluster.py``
#: (docs/benchmarks/clustering.md; 384-d MiniLM-derived vectors, 2-core CPU): the two modes take the
#: same time at 2,000 rows (2.4 s each), the kNN-graph mode is 1.3x faster at 5,000, 2.5x at
#: 10,000, 3.7x at 20,000 and 6.2x at 50,000, with higher ARI against the gold clusters from
#: 5,000 on. Peak memory was equal (the vectors dominate).
KNN_MODE_MIN_ROWS = 5_000

#: Stands in for a zero distance (exact duplicates): sparse matrices drop explicit zeros.
_ZERO = 1e-9


@dataclass(frozen=True)
class HdbscanSettings:
    """Settings of one HDBSCAN run.

    Attributes:
        min_cluster_size: smallest cluster; smaller groups become noise.
        min_samples: neighbours defining a row's core distance (``None``: ``min_cluster_size``).
        mode: ``auto``, ``pca`` or ``knn`` (see the module docstring).
        pca_dim: dimensions kept by PCA in ``pca`` mode.
        k: neighbours per row in ``knn`` mode (raised to ``min_samples`` when smaller).
        selection: ``eom`` (excess of mass) or ``leaf`` cluster selection.
        epsilon: ``cluster_selection_epsilon``: clusters closer than this distance are merged.
    """

    min_cluster_size: int = 5
    min_samples: int | None = None
    mode: str = "auto"
    pca_dim: int = 32
    k: int = 15
    selection: str = "eom"
    epsilon: float = 0.0

    @property
    def samples(self) -> int:
        return self.min_samples or self.min_cluster_size

    @property
    def neighbours(self) -> int:
        return max(self.k, self.samples)

    def check(self) -> None:
        """Raises EclipError: a setting is out of range."""
        if self.mode not in MODES:
            raise EclipError(f"--mode {self.mode!r} is not known; use one of {', '.join(MODES)}.")
        if self.min_cluster_size < 2:
            raise EclipError(f"--min-cluster-size must be at least 2, not {self.min_cluster_size}.")
        if self.min_samples is not None and self.min_samples < 1:
            raise EclipError(f"--min-samples must be at least 1, not {self.min_samples}.")
        if self.selection not in ("eom", "leaf"):
            raise EclipError(f"--selection {self.selection!r} is not known; use eom or leaf.")
        if self.pca_dim < 1 or self.k < 1:
            raise EclipError("--pca-dim and --k must be positive.")

    def resolve_mode(self, n: int) -> str:
        """The mode used for ``n`` rows: ``auto`` becomes ``knn`` from :data:`KNN_MODE_MIN_ROWS`."""
        if self.mode != "auto":
            return self.mode
        return "knn" if n >= KNN_MODE_MIN_ROWS else "pca"


@dataclass(frozen=True)
class HdbscanResult:
    """Per-row output of HDBSCAN.

    Attributes:
        labels: ``(n,)`` int64 cluster id, ``-1`` for noise; clusters numbered from 0 by size.
        probability: ``(n,)`` float32 in [0, 1], strength of membership (0 for noise).
        outlier_score: ``(n,)`` float32 GLOSH outlier score in [0, 1] (Campello et al., TKDD 2015).
        mode: the mode that ran. components: connected parts of the kNN graph (1 in ``pca``).
    """

    labels: np.ndarray
    probability: np.ndarray
    outlier_score: np.ndarray
    mode: str
    components: int = 1


def _hdbscan(settings: HdbscanSettings, metric: str, data, components: int = 1, **kwargs: float) -> HdbscanResult:  # noqa: ANN001 - array or sparse
    import hdbscan

    model = hdbscan.HDBSCAN(
        min_cluster_size=settings.min_cluster_size,
        min_samples=settings.samples,
        metric=metric,
        cluster_selection_method=settings.selection,
        cluster_selection_epsilon=settings.epsilon,
        core_dist_n_jobs=1,
        **kwargs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hdbscan's own deprecation chatter
        model.fit(data)
    labels = _by_size(np.asarray(model.labels_, dtype=np.int64))
    outlier = np.nan_to_num(np.asarray(model.outlier_scores_, dtype=np.float32), nan=0.0, posinf=1.0)
    return HdbscanResult(
        labels,
        np.asarray(model.probabilities_, dtype=np.float32),
        outlier,
        "knn" if metric == "precomputed" else "pca",
        components,
    )


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... by decreasing size (ties: first row); noise stays -1."""
    out = np.full_like(labels, -1)
    keep = labels >= 0
    if not keep.any():
        return out
    uniq, first, counts = np.unique(labels[keep], return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    new = np.empty(len(uniq), dtype=np.int64)
    new[order] = np.arange(len(uniq))
    out[keep] = new[np.searchsorted(uniq, labels[keep])]
    return out


def cluster_pca(vectors: np.ndarray, settings: HdbscanSettings, seed: int = 0) -> HdbscanResult:
    """HDBSCAN on PCA-reduced vectors (Euclidean).

    Args:
        vectors: ``(n, d)`` float32, L2-normalised, ``n >= 2``.
        settings: HDBSCAN settings; ``pca_dim`` >= d keeps the vectors as they are.
        seed: PCA's randomised-solver seed.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(vectors, dtype=np.float32)
    dim = min(settings.pca_dim, x.shape[1], len(x))
    if dim < x.shape[1]:
        x = PCA(n_components=dim, random_state=seed).fit_transform(x)
    return _hdbscan(settings, "euclidean", x.astype(np.float64))


def knn_graph(scores: np.ndarray, nn: np.ndarray) -> tuple[sp.csr_matrix, int]:
    """Symmetric sparse Euclidean distance matrix of a kNN table, made connected.

    Args:
        scores: ``(n, k)`` float32 cosine similarities of each row's neighbours.
        nn: ``(n, k)`` int64 neighbour row positions, ``-1`` for none.

    Returns:
        ``(graph, components)``: ``(n, n)`` float64 CSR, ``sqrt(2 - 2 cos)`` per kNN edge (the
        smaller when both directions exist, zeros stored as 1e-9), plus bridge edges at a
        distance beyond every kNN edge joining each further connected part to the first;
        and the number of connected parts before bridging.
    """
    n = len(nn)
    rows = np.repeat(np.arange(n, dtype=np.int64), nn.shape[1])
    cols = nn.reshape(-1)
    keep = cols >= 0
    rows, cols = rows[keep], cols[keep]
    d = np.sqrt(np.clip(2.0 - 2.0 * scores.reshape(-1)[keep].astype(np.float64), 0.0, 4.0))
    d = np.maximum(d, _ZERO)
    a, b = np.concatenate([rows, cols]), np.concatenate([cols, rows])
    dd = np.concatenate([d, d])
    # one entry per (row, col): the smaller distance (both directions are the same pair)
    order = np.lexsort((dd, b, a))
    a, b, dd = a[order], b[order], dd[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    graph = sp.csr_matrix((dd[first], (a[first], b[first])), shape=(n, n))
    parts, comp = connected_components(graph, directed=False)
    if parts > 1:
        bridge = 2.0 * max(float(dd.max()) if len(dd) else 1.0, 1.0) + 1.0
        heads = np.full(parts, n, dtype=np.int64)
        np.minimum.at(heads, comp, np.arange(n, dtype=np.int64))
        hub = heads[comp[0]]
        others = heads[heads != hub]
        extra = sp.csr_matrix(
            (
                np.full(2 * len(others), bridge),
                (
                    np.concatenate([np.full(len(others), hub), others]),
                    np.concatenate([others, np.full(len(others), hub)]),
                ),
            ),
            shape=(n, n),
        )
        graph = (graph + extra).tocsr()
    return graph, int(parts)


def cluster_knn(scores: np.ndarray, nn: np.ndarray, settings: HdbscanSettings) -> HdbscanResult:
    """HDBSCAN on the sparse kNN distance graph (``metric="precomputed"``).

    Args:
        scores, nn: ``(n, k)`` kNN table as returned by :func:`eclip.index.knn_self_join`,
            with ``k >= settings.samples``. Rows with fewer than ``min_samples`` neighbours
            found (``-1`` padding from an approximate index) take the graph's largest
            distance as their core distance.

    Raises:
        EclipError: ``k`` is smaller than ``min_samples``.
    """
    if nn.shape[1] < settings.samples:
        raise EclipError(
            f"the kNN graph has {nn.shape[1]} neighbours per row, fewer than min_samples={settings.samples}; raise --k."
        )
    graph, parts = knn_graph(scores, nn)
    # rows an approximate index gave fewer than min_samples neighbours get the largest
    # distance of the graph as core distance (hdbscan's `max_dist`), not an error
    return _hdbscan(settings, "precomputed", graph, parts, max_dist=float(graph.max()) if graph.nnz else 1.0)
