"""HDBSCAN clustering: both modes, the kNN graph, summaries, and `eclip cluster` on fashion."""

import json

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from eclip.cli import app
from eclip.cluster import HdbscanSettings, cluster_knn, cluster_pca, knn_graph
from eclip.cluster.summary import class_tfidf_terms, medoids
from eclip.errors import EclipError


def blobs(n_per=40, k=6, d=24, spread=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    labels = np.repeat(np.arange(k), n_per)
    x = centres[labels] + spread * rng.normal(size=(len(labels), d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def exact_knn(x, k):
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    nn = np.argsort(-sims, axis=1)[:, :k]
    return np.take_along_axis(sims, nn, 1).astype(np.float32), nn.astype(np.int64)


def test_both_modes_recover_separated_blobs_and_agree():
    x, gold = blobs()
    s = HdbscanSettings(min_cluster_size=5)
    pca = cluster_pca(x, s)
    knn = cluster_knn(*exact_knn(x, 15), s)
    assert adjusted_rand_score(gold, pca.labels) > 0.95
    assert adjusted_rand_score(gold, knn.labels) > 0.95
    assert adjusted_rand_score(pca.labels, knn.labels) > 0.95
    # clusters are numbered by decreasing size
    sizes = np.bincount(knn.labels[knn.labels >= 0])
    assert list(sizes) == sorted(sizes, reverse=True)
    assert knn.probability.dtype == np.float32 and ((knn.probability >= 0) & (knn.probability <= 1)).all()


def test_knn_graph_is_symmetric_keeps_duplicates_and_bridges_components():
    x, _ = blobs(n_per=20, k=3, spread=0.01)
    x[1] = x[0]  # an exact duplicate: distance 0 must survive as a stored edge
    scores, nn = exact_knn(x, 5)
    graph, parts = knn_graph(scores, nn)
    assert parts == 3  # three far-apart blobs, 5-NN never crosses
    assert abs(graph - graph.T).max() == 0
    assert 0 < graph[0, 1] < 1e-3  # float32 cosine of equal vectors is 1 - 6e-8
    from scipy.sparse.csgraph import connected_components

    assert connected_components(graph, directed=False)[0] == 1  # bridged
    assert graph.max() > 2.0  # the bridges lie beyond every real distance (max 2 on the sphere)
    res = cluster_knn(scores, nn, HdbscanSettings(min_cluster_size=5))
    assert res.components == 3 and res.labels.max() == 2


def test_scattered_points_are_noise():
    x, gold = blobs(n_per=30, k=3)
    rng = np.random.default_rng(1)
    stray = rng.normal(size=(6, x.shape[1])).astype(np.float32)
    x = np.vstack([x, stray / np.linalg.norm(stray, axis=1, keepdims=True)])
    res = cluster_knn(*exact_knn(x, 10), HdbscanSettings(min_cluster_size=5))
    assert (res.labels[-6:] == -1).sum() >= 4
    assert res.outlier_score[-6:].mean() > res.outlier_score[:-6].mean()


def test_settings_are_checked():
    with pytest.raises(EclipError, match="--mode"):
        HdbscanSettings(mode="umap").check()
    with pytest.raises(EclipError, match="min-cluster-size"):
        HdbscanSettings(min_cluster_size=1).check()
    x, _ = blobs()
    with pytest.raises(EclipError, match="raise --k"):
        cluster_knn(*exact_knn(x, 3), HdbscanSettings(min_cluster_size=5))
    assert HdbscanSettings().resolve_mode(10) == "pca" and HdbscanSettings().resolve_mode(10**6) == "knn"
    assert HdbscanSettings(mode="knn").resolve_mode(10) == "knn"


def test_class_tfidf_prefers_terms_specific_to_a_cluster():
    texts = [
        "red running shoe",
        "red trail shoe",
        "running shoe blue",
        "leather wallet brown",
        "brown wallet slim",
        "wallet running",
        "noise row",
    ]
    labels = np.array([0, 0, 0, 1, 1, 1, -1])
    terms = class_tfidf_terms(texts, labels, top=2)
    assert set(terms) == {0, 1}
    assert terms[0][0] == "shoe"  # in every title of cluster 0 and nowhere else
    assert terms[1][0] == "wallet"
    assert "running" not in terms[1]  # shared with cluster 0: down-weighted
    assert class_tfidf_terms(["", ""], np.array([0, 0])) == {0: []}


def test_medoid_is_the_row_closest_to_all_others():
    x = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1], [1, 0]], dtype=np.float32)
    labels = np.array([0, 0, 0, 0, -1])
    prob = np.array([0.2, 1.0, 0.9, 0.1, 0.0], dtype=np.float32)
    reps = medoids(x, labels, prob, exemplars=2)
    # summed cosines: row0 2.4, row1 2.76, row2 2.76 (tie -> first), row3 2.4
    assert reps[0][0] == 1
    assert reps[0][1] == [1, 2]
    assert reps[0][2] == pytest.approx((2 * 0.7071 + 2 * 0.9899) / 4, abs=1e-3)  # mean cosine to the mean direction


def test_cli_cluster_on_fashion_both_modes(fashion_subset, tmp_path):
    runner = CliRunner()
    out = tmp_path / "pca"
    r = runner.invoke(
        app,
        [
            "cluster",
            str(fashion_subset / "catalog.csv"),
            "--out",
            str(out),
            "--gold-col",
            "articleType",
            "--min-cluster-size",
            "8",
        ],
    )
    assert r.exit_code == 0, r.output
    clusters = pl.read_parquet(out / "clusters.parquet")
    catalog = pl.read_csv(fashion_subset / "catalog.csv", infer_schema=False)
    assert sorted(clusters["id"].to_list()) == sorted(catalog["id"].to_list())
    assert clusters.columns[:4] == ["id", "cluster_id", "probability", "outlier_score"]
    summary = pl.read_parquet(out / "cluster_summary.parquet")
    assert summary["size"].sum() == (clusters["cluster_id"] >= 0).sum()
    assert summary["cluster_id"].to_list() == list(range(len(summary)))
    assert all(len(t) > 0 for t in summary["top_terms"].to_list())
    m = json.loads((out / "manifest.json").read_text())
    assert m["clustering"]["mode"] == "pca"
    metrics = m["metrics"]
    assert {"ari", "nmi", "bcubed_precision", "bcubed_recall", "bcubed_f1", "noise_fraction"} <= set(metrics)
    assert metrics["nmi"] > 0.3 and metrics["bcubed_precision"] > 0.5, metrics  # titles name the article type
    assert 0 < summary["gold_purity"].min() and summary["gold_purity"].max() <= 1
    # the kNN-graph mode reuses the embeddings cached in the first run
    r = runner.invoke(
        app,
        [
            "cluster",
            str(out / "embeddings"),
            "--out",
            str(tmp_path / "knn"),
            "--mode",
            "knn",
            "--gold-col",
            "articleType",
            "--min-cluster-size",
            "8",
        ],
    )
    assert r.exit_code == 0, r.output
    m2 = json.loads((tmp_path / "knn" / "manifest.json").read_text())
    assert m2["clustering"]["mode"] == "knn" and m2["clustering"]["index"]["factory"] == "Flat"
    assert m2["metrics"]["nmi"] > 0.3
    r = runner.invoke(app, ["cluster", str(out / "embeddings"), "--out", str(tmp_path / "bad"), "--gold-col", "nope"])
    from eclip.errors import GoldError

    assert isinstance(r.exception, GoldError) and "not a gold file eclip understands" in str(r.exception)


def test_rows_with_missing_neighbours_get_the_largest_core_distance_not_an_error():
    x, gold = blobs()
    scores, nn = exact_knn(x, 15)
    nn[::7, 3:] = -1  # an approximate index found only 3 neighbours for every 7th row
    scores[::7, 3:] = -np.inf
    res = cluster_knn(scores, nn, HdbscanSettings(min_cluster_size=5))
    assert adjusted_rand_score(gold[res.labels >= 0], res.labels[res.labels >= 0]) > 0.95
