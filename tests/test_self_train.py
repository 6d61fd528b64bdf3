"""Self-training (``eclip dedupe --self-train``): the text encoder fine-tuned on a first pass's
certain matches, on a tiny random sentence-transformers model."""

import json

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from eclip import api
from eclip.cli import app
from eclip.encoders.sentence import weights_digest
from eclip.errors import EclipError
from eclip.train.pairs import MARKER, PairTrainingConfig, fine_tune_on_pairs, is_trained, weights_sha256

runner = CliRunner()
BRANDS = ["Sony", "Canon", "Nikon", "Bosch", "Apple", "Dell", "Asus", "Acer", "Makita", "Philips"]
THINGS = ["camera", "lens", "drill", "laptop", "kettle", "monitor", "router", "speaker", "tablet", "blender"]


def _pairs(n=24):
    left, right = [], []
    for i in range(n):
        b, t = BRANDS[i % 10], THINGS[(i * 3) % 10]
        left.append(f"{b} {t} model XK{100 + i}")
        right.append(f"{t} by {b}, XK{100 + i} (new)")
    return left, right


def _catalog(path, products=20):
    rows = []
    for i in range(products):
        b, t = BRANDS[i % 10], THINGS[(i * 7) % 10]
        rows += [
            {"id": f"a{i}", "title": f"{b} {t} QZ-{4000 + 37 * i}B black"},
            {"id": f"b{i}", "title": f"{b} QZ{4000 + 37 * i}B {t}, black"},
        ]
    pl.DataFrame(rows).write_csv(path)


def test_fine_tuning_pulls_pairs_together_and_marks_the_model(tiny_sentence_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    left, right = _pairs()
    keys = np.arange(len(left))
    cfg = PairTrainingConfig(epochs=4, batch_size=8, lr=5e-4, warmup_steps=1, device="cpu")
    record = fine_tune_on_pairs(tiny_sentence_dir, left, right, keys, tmp_path / "w", cfg)
    model_dir = tmp_path / "w" / "model"
    assert is_trained(model_dir) and record["steps"] == 12 and record["pairs"] == 24
    assert record["loss_last"] < record["loss_first"]
    assert not (tmp_path / "w" / "checkpoints").exists()  # cleaned up once the model is written
    # the trained weights differ, and so does the digest that embedding caches are keyed on
    assert record["weights_sha256"] != weights_sha256(tiny_sentence_dir)
    assert weights_digest(model_dir) != weights_digest(tiny_sentence_dir)

    def margin(folder):
        m = SentenceTransformer(str(folder), device="cpu")
        a, b = m.encode(left, normalize_embeddings=True), m.encode(right, normalize_embeddings=True)
        sims = a @ b.T
        return float(np.diag(sims).mean() - sims[~np.eye(len(left), dtype=bool)].mean())

    assert margin(model_dir) > margin(tiny_sentence_dir) + 0.05
    # a finished model is not trained again
    again = fine_tune_on_pairs(tiny_sentence_dir, left, right, keys, tmp_path / "w", cfg)
    assert again == json.loads((model_dir / MARKER).read_text())
    # other pairs: trained again, not the stale model
    other = fine_tune_on_pairs(tiny_sentence_dir, left[:16], right[:16], keys[:16], tmp_path / "w", cfg)
    assert other["pairs"] == 16 and other["task_sha256"] != record["task_sha256"]
    assert other["weights_sha256"] != record["weights_sha256"]


def test_a_killed_fine_tuning_resumes_to_the_same_weights(tiny_sentence_dir, tmp_path, monkeypatch):
    left, right = _pairs(16)
    keys = np.arange(16) // 2  # two pairs per group: multi-positive targets
    cfg = PairTrainingConfig(epochs=2, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=2, device="cpu")
    whole = fine_tune_on_pairs(tiny_sentence_dir, left, right, keys, tmp_path / "whole", cfg)

    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        fine_tune_on_pairs(tiny_sentence_dir, left, right, keys, tmp_path / "killed", cfg)
    assert not is_trained(tmp_path / "killed" / "model")
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").glob("*.pt"))[-1] == "step-0000004.pt"
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    resumed = fine_tune_on_pairs(tiny_sentence_dir, left, right, keys, tmp_path / "killed", cfg)
    assert resumed["steps"] == whole["steps"] == 8
    assert resumed["weights_sha256"] == whole["weights_sha256"]


def test_fine_tuning_refuses_too_few_pairs_and_bad_settings(tiny_sentence_dir, tmp_path):
    with pytest.raises(EclipError, match="at least 2 confident pairs"):
        fine_tune_on_pairs(tiny_sentence_dir, ["a"], ["b"], np.zeros(1), tmp_path / "w")
    with pytest.raises(EclipError, match="batch_size"):
        PairTrainingConfig(batch_size=1)
    with pytest.raises(EclipError, match="lr"):
        PairTrainingConfig(lr=0.0)
    with pytest.raises(EclipError, match="min_probability"):
        api.SelfTrainConfig(min_probability=0.2)


def test_dedupe_self_trained_runs_two_passes_and_resumes(tiny_sentence_dir, tmp_path):
    _catalog(tmp_path / "c.csv")
    cfg = api.DedupeConfig(model=str(tiny_sentence_dir))
    st = api.SelfTrainConfig(training=PairTrainingConfig(epochs=2, batch_size=8, device="cpu"))
    m = api.dedupe_self_trained(tmp_path / "c.csv", tmp_path / "run", cfg, st)
    work = tmp_path / "run" / "self-train"
    assert (work / "first-pass" / "groups.parquet").is_file() and is_trained(work / "model")
    assert m["self_training"]["pairs"] >= 2 and m["self_training"]["first_pass_method"] in ("mutual", "average")
    assert str(work / "model") in json.dumps(m["model"])  # the second pass embedded with the trained model
    saved = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert saved["self_training"]["weights_sha256"] == m["self_training"]["weights_sha256"]
    groups = pl.read_parquet(tmp_path / "run" / "groups.parquet")
    assert groups.height == 40
    # a rerun reuses the trained model instead of training again
    again = api.dedupe_self_trained(tmp_path / "c.csv", tmp_path / "run", cfg, st)
    assert again["self_training"]["seconds"] == m["self_training"]["seconds"]


def test_self_train_refusals_are_one_line(tmp_path):
    from conftest import run_main

    _catalog(tmp_path / "c.csv")
    for extra, said in (
        (["--model", "minilm-static"], "--self-train fine-tunes a sentence-transformers text model"),
        (["--embeddings", tmp_path], "leave out --embeddings"),
        (["--against", tmp_path], "--self-train does not apply with --against"),
    ):
        code, out = run_main("dedupe", tmp_path / "c.csv", "--self-train", "--out", tmp_path / "o", *extra)
        assert code != 0 and "Traceback" not in out and said in out, out


def test_self_train_appears_in_the_help():
    r = runner.invoke(app, ["dedupe", "--help"], terminal_width=80)
    assert r.exit_code == 0 and "--self-train" in r.output and "--self-train-pairs" in r.output
