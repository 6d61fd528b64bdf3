"""``--ray`` (issue 20): embed, index build and dedupe on a local 2-CPU Ray instance give the
single process's output, and a worker killed with SIGKILL mid-embed is replaced and retried.

Marked slow (Ray's start and its actors' model loads take minutes on 2 cores): run by
``.ci/run`` after the main suite."""

import json

import numpy as np
import polars as pl
import pytest
from conftest import abt_head

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runner():
    from eclip.distributed import RayRunner

    r = RayRunner(num_cpus=2, num_workers=2)
    r.start()
    yield r
    ray.shutdown()


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    return abt_head(tmp_path_factory, 300, "ray")


def _embed_cfg(model, ray=None):
    from eclip.encoders import EmbedSettings
    from eclip.jobs.embed import EmbedConfig

    return EmbedConfig(model=str(model), runtime="torch", settings=EmbedSettings(shard_rows=100), ray=ray)


@pytest.fixture(scope="module")
def single(subset, tiny_sentence_dir, tmp_path_factory):
    from eclip.jobs.embed import embed

    out = tmp_path_factory.mktemp("single") / "emb"
    embed(subset, out, _embed_cfg(tiny_sentence_dir))
    return out


def test_embed_on_ray_gives_the_single_process_vectors(runner, subset, single, tiny_sentence_dir, tmp_path):
    from eclip.encoders import load_embeddings
    from eclip.jobs.embed import embed

    m = embed(subset, tmp_path / "emb", _embed_cfg(tiny_sentence_dir, runner))
    assert m["executor"]["kind"] == "ray" and m["executor"]["workers"] == 2 and m["embedded_rows"] == 300
    shards = [json.loads((tmp_path / "emb" / "shards" / f"{i:05d}" / "shard.json").read_text()) for i in range(3)]
    assert [s["start"] for s in shards] == [0, 100, 200]  # each actor wrote its shard at the right rows
    a, b = load_embeddings(single), load_embeddings(tmp_path / "emb")
    assert a.ids == b.ids and np.array_equal(a.text, b.text)


def test_killed_worker_is_replaced_and_the_run_completes(
    runner, subset, single, tiny_sentence_dir, tmp_path, monkeypatch
):
    from eclip.encoders import load_embeddings
    from eclip.jobs.embed import embed

    monkeypatch.setenv("ECLIP_FAULT_AT", "embed-shard-1")  # the actor writing shard 1 SIGKILLs itself
    m = embed(subset, tmp_path / "emb", _embed_cfg(tiny_sentence_dir, runner))
    assert (
        m["status"] == "complete" and m["executor"]["shards_on_restarted_actors"] >= 1
    )  # Ray restarted the dead actor
    a, b = load_embeddings(single), load_embeddings(tmp_path / "emb")
    assert a.ids == b.ids and np.array_equal(a.text, b.text)


def test_index_build_on_ray_gives_the_same_search_results(runner, single, tmp_path):
    from eclip.encoders import load_embeddings
    from eclip.index import open_index_dir
    from eclip.jobs.index import index_build

    index_build(single, tmp_path / "one", factory="IVF8,Flat")
    m = index_build(single, tmp_path / "ray", factory="IVF8,Flat", ray=runner)
    assert m["merged_shards"] == 2 and m["executor"]["kind"] == "ray" and m["n"] == 300
    x = load_embeddings(single).text
    one, on_ray = open_index_dir(tmp_path / "one"), open_index_dir(tmp_path / "ray")
    d1, i1 = one.search(x, 10)
    d2, i2 = on_ray.search(x, 10)
    assert np.array_equal(i1, i2) and np.allclose(d1, d2)


def test_dedupe_on_ray_gives_the_same_groups(runner, subset, single, tmp_path):
    from eclip.jobs.dedupe import DedupeConfig, dedupe

    dedupe(subset, tmp_path / "one", DedupeConfig(embeddings=single))
    m = dedupe(subset, tmp_path / "ray", DedupeConfig(embeddings=single, ray=runner))
    assert m["counts"]["multi_row_groups"] > 0  # there is something to get wrong
    for name in ("groups.parquet", "pairs.parquet"):
        assert pl.read_parquet(tmp_path / "one" / name).equals(pl.read_parquet(tmp_path / "ray" / name)), name


def test_a_failing_task_names_its_rows(runner, tmp_path):
    from eclip.errors import EclipError
    from eclip.jobs.ray_steps import knn_task

    shared = {"xb": np.zeros((100, 4), np.float32), "folder": str(tmp_path / "no-index"), "k": 5}
    with pytest.raises(
        EclipError,
        match=r"searching stopped: rows (1-50|51-100) failed \(kNN block [01] \(rows (1-50|51-100)\): RunDirError: .*no-index",
    ) as info:
        runner.map_tasks(knn_task, [(0, 50), (50, 100)], "searching", shared)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
