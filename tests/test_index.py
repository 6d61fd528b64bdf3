import numpy as np
import pytest

from eclip.errors import RunDirError
from eclip.index import IndexSettings, build_index, knn_self_join, load_index, recall_at_k, save_index


def clustered(n=6000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n // 20, d))
    x = centers[rng.integers(0, len(centers), n)] + 0.3 * rng.normal(size=(n, d))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_self_join_is_exact_and_excludes_self():
    x = clustered(500)
    knn = build_index(x, IndexSettings(), k=5)
    assert knn.kind == "flat"
    scores, ids = knn_self_join(knn, x, 5)
    assert ids.shape == (500, 5)
    assert not (ids == np.arange(500)[:, None]).any()
    exact = np.argsort(-(x @ x.T) + np.eye(500) * 10, axis=1)[:, :5]
    assert recall_at_k(ids, exact) > 0.99
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_tiny_catalog_pads_missing_neighbours():
    x = clustered(40)[:3]
    knn = build_index(x, IndexSettings(), k=5)
    scores, ids = knn_self_join(knn, x, 5)
    assert (ids[:, 2:] == -1).all()
    assert np.isneginf(scores[:, 2:]).all()


def test_ivfpq_with_refine_reaches_target_recall(tmp_path):
    x = clustered()
    s = IndexSettings(flat_max=1000, tune_queries=300)
    knn = build_index(x, s, k=10, key="k1")
    assert knn.kind == "ivfpq"
    assert knn.info["recall@10"] >= 0.95
    _, ids = knn_self_join(knn, x[:300], 10)  # row i of the query = row i of the index
    flat = build_index(x, IndexSettings(), k=10)
    _, exact = knn_self_join(flat, x[:300], 10)
    assert recall_at_k(ids, exact) >= 0.9

    save_index(knn, tmp_path)
    again = load_index(tmp_path, x, "k1", s)
    assert again is not None and again.kind == "ivfpq" and again.info["nprobe"] == knn.info["nprobe"]
    with pytest.raises(RunDirError, match="Refusing to mix"):
        load_index(tmp_path, x, "another-model", s)
    assert load_index(tmp_path / "empty", x, "k1", s) is None
