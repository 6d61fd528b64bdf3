"""The sharded embedding job: resuming (in-process and after a real SIGKILL), refusing to mix
models, torchrun with 2 gloo ranks, pHash, and multimodal dedupe on an embeddings directory."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from eclip.catalog import load_catalog
from eclip.encoders import EmbedSettings, embed_catalog, load_embeddings
from eclip.encoders.phash import hamming, phash_bytes
from eclip.errors import RunDirError
from eclip.index.binary import hamming_pairs
from eclip.matcher import ModalityThresholds, combine_modalities, union_candidates

ECLIP = [sys.executable, "-c", "from eclip.cli import main; main()"]


def _catalog(tmp_path, n=50):
    f = tmp_path / "cat.csv"
    pl.DataFrame({"id": [f"p{i}" for i in range(n)], "title": [f"product number {i}" for i in range(n)]}).write_csv(f)
    return load_catalog(f)


def test_rerun_reuses_every_shard(tmp_path, hash_encoder):
    cat = _catalog(tmp_path)
    m1 = embed_catalog(hash_encoder, cat, tmp_path / "e", EmbedSettings(shard_rows=16))
    assert m1["embedded_rows"] == 50 and m1["shards"] == 4
    rows = hash_encoder.rows
    m2 = embed_catalog(hash_encoder, cat, tmp_path / "e", EmbedSettings(shard_rows=16))
    assert hash_encoder.rows == rows and m2["reused_rows"] == 50 and m2["embedded_rows"] == 0
    emb = load_embeddings(tmp_path / "e")
    assert emb.ids == cat.ids and emb.text.shape == (50, 64)
    assert np.allclose(np.linalg.norm(emb.fused, axis=1), 1.0, atol=1e-5)
    assert emb.image is None and emb.phash is None


def test_crash_then_resume_redoes_only_unfinished_shards(tmp_path, hash_encoder):
    cat = _catalog(tmp_path)

    class Killed(Exception):
        pass

    class Dies(type(hash_encoder)):
        def encode(self, texts):
            if self.calls == 2:  # titles go a shard (16 rows) per call: dies in the third shard
                raise Killed
            return super().encode(texts)

    with pytest.raises(Killed):
        embed_catalog(Dies(), cat, tmp_path / "e", EmbedSettings(shard_rows=16, batch_size=8))
    assert sorted(p.name for p in (tmp_path / "e" / "shards").iterdir() if not p.name.startswith(".")) == [
        "00000",
        "00001",
    ]
    with pytest.raises(RunDirError, match="did not finish"):
        load_embeddings(tmp_path / "e")
    m = embed_catalog(hash_encoder, cat, tmp_path / "e", EmbedSettings(shard_rows=16, batch_size=8))
    assert m["reused_rows"] == 32 and m["embedded_rows"] == 18
    full = embed_catalog(hash_encoder, cat, tmp_path / "clean", EmbedSettings(shard_rows=16, batch_size=8))
    assert full["embedded_rows"] == 50
    assert np.array_equal(load_embeddings(tmp_path / "e").text, load_embeddings(tmp_path / "clean").text)


def test_changed_rows_redo_only_their_shard(tmp_path, hash_encoder):
    cat = _catalog(tmp_path)
    embed_catalog(hash_encoder, cat, tmp_path / "e", EmbedSettings(shard_rows=16))
    f = tmp_path / "cat.csv"
    df = pl.read_csv(f).with_columns(
        pl.when(pl.col("id") == "p40").then(pl.lit("changed title")).otherwise(pl.col("title")).alias("title")
    )
    df.write_csv(f)
    m = embed_catalog(hash_encoder, load_catalog(f), tmp_path / "e", EmbedSettings(shard_rows=16))
    assert m["embedded_rows"] == 16 and m["reused_rows"] == 34


def test_other_model_is_refused_then_overwritten(tmp_path, hash_encoder):
    cat = _catalog(tmp_path)
    embed_catalog(hash_encoder, cat, tmp_path / "e")
    other = type(hash_encoder)(dim=32)
    with pytest.raises(RunDirError, match="another model"):
        embed_catalog(other, cat, tmp_path / "e")
    m = embed_catalog(other, cat, tmp_path / "e", overwrite=True)
    assert m["embedded_rows"] == 50 and load_embeddings(tmp_path / "e").text.shape == (50, 32)


def _photo(seed: int, size: int = 96) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.random((8, 8, 3)) * 255
    return Image.fromarray(base.astype(np.uint8)).resize((size, size), Image.BICUBIC)


def test_phash_survives_reencoding_and_resizing(tmp_path):
    img = _photo(1)
    img.resize((200, 200)).save(tmp_path / "copy.jpg", quality=60)
    copy = Image.open(tmp_path / "copy.jpg").convert("RGB")
    a, b, other = phash_bytes(img), phash_bytes(copy), phash_bytes(_photo(2))
    assert a.dtype == np.uint8 and a.shape == (8,)
    assert hamming(a[None], b[None])[0] <= 4
    assert hamming(a[None], other[None])[0] > 16


def test_hamming_pairs_match_brute_force_and_keep_every_listing_of_a_photo():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (80, 8), dtype=np.uint8)
    codes[10] = codes[3]
    codes[11] = codes[3] ^ np.array([1, 0, 0, 0, 0, 0, 0, 2], np.uint8)  # 2 bits away
    codes[20:35] = codes[40]  # one photo on 16 listings: more than k = 10 neighbours
    near = hamming_pairs(codes, max_distance=4, max_block=50)
    full = np.unpackbits(codes[:, None, :] ^ codes[None, :, :], axis=2).sum(axis=2)
    expect = {(i, j) for i in range(80) for j in range(i + 1, 80) if full[i, j] <= 4}
    assert set(zip(near.a.tolist(), near.b.tolist())) == expect
    assert len(expect) >= 16 * 15 // 2 and (near.a < near.b).all()
    assert near.distance[list(zip(near.a, near.b)).index((3, 11))] == 2
    placeholder = hamming_pairs(codes, max_distance=4, max_block=10)  # 16 rows sharing a photo: a placeholder
    assert set(placeholder.crowded_rows.tolist()) == {*range(20, 35), 40}
    assert (
        not np.isin(placeholder.a, placeholder.crowded_rows).any()
        and not np.isin(placeholder.b, placeholder.crowded_rows).any()
    )
    assert {(3, 10), (3, 11), (10, 11)} <= set(zip(placeholder.a.tolist(), placeholder.b.tolist()))


def test_union_keeps_best_rank_and_every_source():
    text = pl.DataFrame({"a": [0, 1], "b": [1, 2], "rank": [2, 1]})
    image = pl.DataFrame({"a": [0, 3], "b": [1, 4], "rank": [1, 5]})
    code = pl.DataFrame({"a": [1], "b": [2]})
    u = union_candidates({"text": text, "image": image, "code": code})
    rows = {(r["a"], r["b"]): (r["rank"], r["source"]) for r in u.iter_rows(named=True)}
    assert rows == {(0, 1): (1, "image+text"), (1, 2): (1, "code+text"), (3, 4): (5, "image")}


def test_combined_score_passes_exactly_when_one_signal_does():
    t = ModalityThresholds(text=0.6, image=0.9, fused=0.85, phash=8)
    signals = {
        "text_score": np.array([0.7, 0.2, np.nan, 0.1], np.float32),
        "cos_image": np.array([0.1, 0.95, 0.5, 0.2], np.float32),
        "phash_distance": np.array([np.nan, 30, 3, 9], np.float32),
    }
    s = combine_modalities(signals, t)
    assert (s >= 0.6).tolist() == [True, True, True, False]


# --- real subprocesses: a SIGKILL mid-run, and torchrun with two ranks -------------------------


@pytest.fixture(scope="module")
def fashion_subset(tmp_path_factory):
    from conftest import SHARED

    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    folder = tmp_path_factory.mktemp("fashion")
    pl.read_csv(SHARED / "fashion" / "catalog.csv", infer_schema=False).head(240).write_csv(folder / "catalog.csv")
    return folder / "catalog.csv", SHARED / "fashion"


def _embed_cmd(catalog, root, model, out, *extra):
    return [
        *ECLIP,
        "embed",
        str(catalog),
        "--model",
        str(model),
        "--image-col",
        "image",
        "--image-root",
        str(root),
        "--out",
        str(out),
        "--shard-rows",
        "8",
        "--batch-size",
        "8",
        *extra,
    ]


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow  # SIGKILL and resume, about 80 s: run by .ci/run after the main suite
def test_killed_run_resumes_to_the_same_embeddings(fashion_subset, tiny_clip_dir, tmp_path):
    catalog, root = fashion_subset
    clean = subprocess.run(
        _embed_cmd(catalog, root, tiny_clip_dir, tmp_path / "clean", "--workers", "0"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert clean.returncode == 0, clean.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _embed_cmd(catalog, root, tiny_clip_dir, out, "--workers", "1"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline:
        done = [p for p in (out / "shards").glob("[0-9]*")] if (out / "shards").exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len([p for p in (out / "shards").glob("[0-9]*")])
    assert 3 <= finished < 30, "the kill must land mid-run"
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"

    again = subprocess.run(
        _embed_cmd(catalog, root, tiny_clip_dir, out, "--workers", "1"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert (
        m["status"] == "complete"
        and m["reused_rows"] >= 8 * finished - 8
        and m["embedded_rows"] + m["reused_rows"] == 240
    )
    a, b = load_embeddings(tmp_path / "clean"), load_embeddings(out)
    assert a.ids == b.ids
    for name in ("text", "image", "fused", "phash", "has_image"):
        assert np.allclose(getattr(a, name), getattr(b, name), atol=1e-6), name


@pytest.mark.slow  # torchrun, about 80 s: run by .ci/run after the main suite
def test_torchrun_two_ranks_read_as_one(fashion_subset, tiny_clip_dir, tmp_path):
    catalog, root = fashion_subset
    single = subprocess.run(
        _embed_cmd(catalog, root, tiny_clip_dir, tmp_path / "one", "--workers", "0"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    eclip_bin = Path(sys.executable).parent / "eclip"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29533",
        "--no-python",
        str(eclip_bin),
        *_embed_cmd(catalog, root, tiny_clip_dir, tmp_path / "two", "--workers", "0")[3:],
    ]
    dist = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert dist.returncode == 0, dist.stderr[-3000:]
    ranks = {json.loads((d / "shard.json").read_text())["rank"] for d in (tmp_path / "two" / "shards").glob("[0-9]*")}
    assert ranks == {0, 1}
    m = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert m["world_size"] == 2 and m["status"] == "complete"
    a, b = load_embeddings(tmp_path / "one"), load_embeddings(tmp_path / "two")
    assert a.ids == b.ids
    assert np.allclose(a.fused, b.fused, atol=1e-5) and np.array_equal(a.phash, b.phash)


def test_dedupe_on_phash_groups_reused_photos(tmp_path):
    """Three sellers reuse one photo (re-encoded, resized); pHash alone groups them."""
    imgs = tmp_path / "img"
    imgs.mkdir()
    rows = []
    for i in range(12):
        _photo(100 + i).save(imgs / f"{i}.png")
        rows.append({"id": f"r{i}", "title": f"item {i}", "image": f"img/{i}.png"})
    _photo(100).resize((160, 160)).save(imgs / "copy1.jpg", quality=70)
    _photo(100).save(imgs / "copy2.jpg", quality=50)
    rows += [
        {"id": "c1", "title": "other words", "image": "img/copy1.jpg"},
        {"id": "c2", "title": "", "image": "img/copy2.jpg"},
    ]
    pl.DataFrame(rows).write_csv(tmp_path / "cat.csv")
    from conftest import HashEncoder

    from eclip import api

    # a stand-in text model: the pHash signal needs no model at all
    cat = load_catalog(tmp_path / "cat.csv", image_col="image")
    embed_catalog(HashEncoder(), cat, tmp_path / "emb", EmbedSettings(workers=0))
    cfg = api.DedupeConfig(image_col="image", signals=("phash",), method="components", embeddings=tmp_path / "emb")
    m = api.dedupe(tmp_path / "cat.csv", tmp_path / "run", cfg)
    groups = pl.read_parquet(tmp_path / "run" / "groups.parquet")
    g = dict(zip(groups["id"], groups["group_id"]))
    assert g["r0"] == g["c1"] == g["c2"]
    assert groups.filter(pl.col("group_size") > 1).height == 3
    assert m["matching"]["signals"] == ["phash"]
    pairs = pl.read_parquet(tmp_path / "run" / "pairs.parquet")
    assert "phash_distance" in pairs.columns and "cos_embedding" not in pairs.columns
    assert groups.filter(pl.col("id") == "c2")["status"].to_list() == ["matched"]  # no text, matched on its photo


def test_torchrun_device_is_the_local_rank_gpu(monkeypatch):
    import torch

    from eclip.encoders import Dist

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    second_node = Dist(rank=5, world=8)  # global rank 5 is GPU 1 of the second 4-GPU node
    assert second_node.device() == "cuda:1" and second_node.device("cuda") == "cuda:1"
    assert second_node.device("cpu") == "cpu" and second_node.device("cuda:3") == "cuda:3"
    assert Dist().device() is None and Dist().device("cuda") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert second_node.device() == "cpu"
