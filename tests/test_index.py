"""kNN self-join over index directories, sharded builds and incremental adds."""

import faiss
import numpy as np
import polars as pl
import pytest

from eclip.errors import RunDirError
from eclip.index import add_to_index_dir, build_index_dir, knn_self_join, merge_index_dir, open_index_dir, recall_at_k
from eclip.index.shards import parse_shard, shard_rows
from eclip.index.trained import merge_into


def clustered(n=6000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n // 20, d))
    x = centers[rng.integers(0, len(centers), n)] + 0.3 * rng.normal(size=(n, d))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ids_of(n, prefix="r"):
    return [f"{prefix}{i}" for i in range(n)]


def test_flat_self_join_is_exact_and_excludes_self(tmp_path):
    x = clustered(500)
    build_index_dir(x, ids_of(500), tmp_path)
    idx = open_index_dir(tmp_path)
    assert idx.manifest["factory"] == "Flat"
    scores, ids = knn_self_join(idx, x, 5)
    assert ids.shape == (500, 5)
    assert not (ids == np.arange(500)[:, None]).any()
    exact = np.argsort(-(x @ x.T) + np.eye(500) * 10, axis=1)[:, :5]
    assert recall_at_k(ids, exact) > 0.99
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_tiny_catalog_pads_missing_neighbours(tmp_path):
    x = clustered(40)[:3]
    build_index_dir(x, ids_of(3), tmp_path)
    scores, ids = knn_self_join(open_index_dir(tmp_path), x, 5)
    assert (ids[:, 2:] == -1).all()
    assert np.isneginf(scores[:, 2:]).all()


def test_parse_shard_and_rows():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "a/b", "3"):
        with pytest.raises(RunDirError, match="--shard"):
            parse_shard(bad)
    cuts = [shard_rows(i, 3, 10) for i in range(3)]
    assert cuts == [(0, 3), (3, 6), (6, 10)]


@pytest.mark.parametrize(
    "factory", ["IVF64,PQ8x8,Refine(SQ8)", pytest.param("OPQ8_32,IVF64,PQ8x8", marks=pytest.mark.slow), "Flat"]
)
def test_two_shards_merged_equal_a_single_build(tmp_path, factory):
    x = clustered(12000)
    ids = ids_of(len(x))
    single = build_index_dir(x, ids, tmp_path / "single", factory=factory, tune_queries=300)
    for i in (1, 0):  # order of shard builds does not matter
        meta = build_index_dir(x, ids, tmp_path / "sharded", factory=factory, shard=(i, 2))
        assert (meta["start"], meta["stop"]) == shard_rows(i, 2, len(x))
    merged = merge_index_dir(x, ids, tmp_path / "sharded", tune_queries=300)
    assert merged["merged_shards"] == 2 and merged["n"] == len(x)
    assert (merged["nprobe"], merged["recall@10"]) == (single["nprobe"], single["recall@10"])
    a, b = open_index_dir(tmp_path / "single"), open_index_dir(tmp_path / "sharded")
    assert a.ids == b.ids and b.index.ntotal == len(x)
    assert np.array_equal(faiss.serialize_index(a.index), faiss.serialize_index(b.index))
    assert np.array_equal(a.search(x[:200], 10)[1], b.search(x[:200], 10)[1])


def test_merge_refuses_missing_or_foreign_shards(tmp_path):
    x = clustered(3000)
    build_index_dir(x, ids_of(3000), tmp_path, factory="IVF16,Flat", shard=(0, 2))
    with pytest.raises(RunDirError, match="shards 1/2 missing"):
        merge_index_dir(x, ids_of(3000), tmp_path)
    with pytest.raises(RunDirError, match="not an index directory .*index merge"):
        open_index_dir(tmp_path)
    with pytest.raises(RunDirError, match="refusing to mix"):  # another factory in the same folder
        build_index_dir(x, ids_of(3000), tmp_path, factory="IVF32,Flat", shard=(1, 2))
    build_index_dir(x, ids_of(3000), tmp_path, factory="IVF16,Flat", shard=(1, 2))
    with pytest.raises(RunDirError, match="the embeddings have 2,000"):
        merge_index_dir(x[:2000], ids_of(2000), tmp_path)


@pytest.mark.slow  # about 35 s of index training: run by .ci/run after the main suite
def test_merge_into_keeps_row_numbers_through_wrappers():
    x = clustered(12000)[:4000]
    base = faiss.index_factory(32, "OPQ8_32,IVF32,PQ8x8,Refine(SQ8)", faiss.METRIC_INNER_PRODUCT)
    base.train(x)
    a, b = faiss.clone_index(base), faiss.clone_index(base)
    a.add(x[:1500])
    b.add(x[1500:])
    merge_into(a, b)
    assert a.ntotal == 4000
    faiss.extract_index_ivf(a).nprobe = 32
    faiss.downcast_index(a).k_factor = 20
    assert (a.search(x[[10, 2000, 3999]], 1)[1].ravel() == [10, 2000, 3999]).all()


def test_add_appends_skips_known_ids_and_keeps_groups(tmp_path):
    x = clustered(3000)
    old, new = x[:2000], x[2000:]
    groups = pl.DataFrame({"id": ids_of(2000), "group_id": np.arange(2000) // 2})
    build_index_dir(old, ids_of(2000), tmp_path, model={"name": "m", "weights": "w"}, groups=groups)
    first_files = open_index_dir(tmp_path).manifest["files"]
    new_ids = ids_of(1000, "n")
    new_groups = pl.DataFrame({"id": new_ids[:10], "group_id": [5] * 10})  # joins existing group 5
    m = add_to_index_dir(tmp_path, new, new_ids, {"name": "m", "weights": "w"}, new_groups, source="day1")
    assert m["n"] == 3000 and m["adds"][-1]["rows"] == 1000
    assert not (tmp_path / first_files["index"]).exists()  # superseded files are removed
    idx = open_index_dir(tmp_path)
    assert idx.ids[2000:] == new_ids
    assert (idx.search(new[:20], 1)[1].ravel() == np.arange(2000, 2020)).all()
    g = idx.groups()
    assert g.filter(pl.col("id") == "r11")["group_id"].item() == 5  # existing ids unchanged
    assert g.filter(pl.col("id") == "n3")["group_id"].item() == 5
    assert g.filter(pl.col("id") == "n10")["group_id"].item() == 1000  # new singleton after the last id
    assert g["group_id"].n_unique() == 1000 + 990
    again = add_to_index_dir(tmp_path, new, new_ids, {"name": "m", "weights": "w"})
    assert again["n"] == 3000 and again["adds"][-1] == {**again["adds"][-1], "rows": 0, "skipped_known_ids": 1000}
    with pytest.raises(RunDirError, match="refusing to mix"):
        add_to_index_dir(tmp_path, new, ids_of(1000, "z"), {"name": "other", "weights": "w"})


def test_rebuild_reuses_the_trained_index(tmp_path):
    x = clustered(5000)
    build_index_dir(x, ids_of(5000), tmp_path, factory="IVF32,PQ8x8", tune_queries=200)
    stamp = (tmp_path / "trained.faiss").stat().st_mtime_ns
    (tmp_path / "manifest.json").unlink()  # as if killed after training
    m = build_index_dir(x, ids_of(5000), tmp_path, factory="IVF32,PQ8x8", tune_queries=200)
    assert (tmp_path / "trained.faiss").stat().st_mtime_ns == stamp and m["n"] == 5000


def test_nprobe_tuning_stops_where_recall_plateaus_below_the_target():
    import faiss

    from eclip.index.autotune import PLATEAU_GAIN, exact_topk, recall_at_k, set_nprobe, tune_nprobe

    rng = np.random.default_rng(0)
    xb = rng.standard_normal((4000, 32)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    index = faiss.index_factory(
        32, "IVF32,PQ4x4", faiss.METRIC_INNER_PRODUCT
    )  # coarse codes: recall stays far below 0.99
    index.train(xb)
    index.add(xb)
    queries = xb[:200]
    exact = exact_topk(xb, queries, 10)
    nprobe, recall = tune_nprobe(index, queries, exact, target=0.99)
    assert recall < 0.99 and nprobe < 32  # the target is out of reach; it did not probe every list
    set_nprobe(index, min(2 * nprobe, 32))
    assert recall_at_k(index.search(queries, 10)[1], exact) - recall < PLATEAU_GAIN  # doubling buys too little
