"""Standalone index directories: autotuned factory, recall target, reload (mmap or not),
refusing vectors of another model or dimension."""

import numpy as np
import polars as pl
import pytest

from eclip.errors import RunDirError
from eclip.index.store import build_index_dir, choose_factory, open_index_dir


def _clustered(n=20000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 20, d)).astype(np.float32)
    x = np.repeat(centres, 20, axis=0) + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_factory_follows_size_and_budget():
    assert choose_factory(5_000, 384) == "Flat"
    big = choose_factory(1_000_000, 384)
    assert big.startswith("IVF4096,PQ48x8") and big.endswith("Refine(SQ8)")
    # (48 + 8 + 384) bytes per vector is 29% of float32: within the 35% goal
    assert (48 + 8 + 384) / (4 * 384) < 0.35
    tight = choose_factory(1_000_000, 384, max_memory=200 * 10**6)
    assert tight == "IVF4096,PQ48x8"
    with pytest.raises(RunDirError, match="raise --max-memory"):
        choose_factory(1_000_000, 384, max_memory=10**6)
    assert choose_factory(5_000, 384, max_memory=10**6).startswith("IVF")  # Flat would not fit


def test_ivfpq_meets_recall_and_reloads(tmp_path):
    x = _clustered()
    ids = [f"r{i}" for i in range(len(x))]
    model = {"name": "m", "weights": "w1"}
    m = build_index_dir(x, ids, tmp_path / "idx", model, factory=choose_factory(len(x), 32, flat_max=1000))
    assert m["factory"].startswith("IVF") and m["recall@10"] >= 0.95 and m["nprobe"] >= 1
    assert m["fraction_of_float32"] < 1.0
    results = []
    for mmap in (False, True):
        idx = open_index_dir(tmp_path / "idx", mmap=mmap)
        assert idx.ids == ids and idx.manifest["factory"] == m["factory"]
        results.append(idx.search(x[:50], 10, model)[1])
    assert np.array_equal(results[0], results[1])
    assert (results[0][:, 0] == np.arange(50)).mean() > 0.9


def test_wrong_model_or_dimension_is_refused(tmp_path):
    x = _clustered(2000, 16)
    build_index_dir(x, [str(i) for i in range(2000)], tmp_path / "idx", {"name": "minilm", "weights": "a"})
    idx = open_index_dir(tmp_path / "idx")
    assert idx.manifest["factory"] == "Flat"
    with pytest.raises(RunDirError, match="refusing to mix"):
        idx.search(x[:2], 5, {"name": "openclip:ViT-B-32", "weights": "b"})
    with pytest.raises(RunDirError, match="dimension 8"):
        idx.search(x[:2, :8], 5, {"name": "minilm", "weights": "a"})
    with pytest.raises(RunDirError, match="not an index directory"):
        open_index_dir(tmp_path)


def test_index_build_and_query_from_an_embeddings_dir(tmp_path, hash_encoder):
    from eclip import api
    from eclip.catalog import load_catalog
    from eclip.encoders import embed_catalog

    f = tmp_path / "cat.csv"
    pl.DataFrame(
        {"id": [f"p{i}" for i in range(300)], "title": [f"widget model {i} blue" for i in range(300)]}
    ).write_csv(f)
    embed_catalog(hash_encoder, load_catalog(f), tmp_path / "emb")
    m = api.index_build(tmp_path / "emb", tmp_path / "idx")
    assert m["n"] == 300 and m["vectors"] == "text" and m["model"]["name"] == hash_encoder.name
    with pytest.raises(RunDirError, match="no 'image' vectors"):
        api.index_build(tmp_path / "emb", tmp_path / "idx2", vectors="image")


def test_adding_embeddings_of_another_model_is_refused(tmp_path, hash_encoder):
    """A real embeddings directory made by another model (and dimension) is refused by `add`."""
    from conftest import HashEncoder

    from eclip import api
    from eclip.catalog import load_catalog
    from eclip.encoders import embed_catalog

    f = tmp_path / "cat.csv"
    pl.DataFrame(
        {"id": [f"p{i}" for i in range(50)], "title": [f"widget model {i} blue" for i in range(50)]}
    ).write_csv(f)
    new = tmp_path / "new.csv"
    pl.DataFrame({"id": ["q1", "q2"], "title": ["widget model 7 red", "gadget 9"]}).write_csv(new)
    embed_catalog(hash_encoder, load_catalog(f), tmp_path / "emb")
    api.index_build(tmp_path / "emb", tmp_path / "idx")
    other = HashEncoder(dim=32)
    other.name = "another-model"
    embed_catalog(other, load_catalog(new), tmp_path / "emb_other")
    with pytest.raises(RunDirError, match="dimension 32"):
        api.index_add(tmp_path / "idx", tmp_path / "emb_other")
    renamed = HashEncoder(dim=64)
    renamed.name = "another-model"
    embed_catalog(renamed, load_catalog(new), tmp_path / "emb_renamed")
    with pytest.raises(RunDirError, match="refusing to mix"):
        api.index_add(tmp_path / "idx", tmp_path / "emb_renamed")
    embed_catalog(hash_encoder, load_catalog(new), tmp_path / "emb_same")
    assert api.index_add(tmp_path / "idx", tmp_path / "emb_same")["n"] == 52
