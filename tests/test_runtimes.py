"""Fast text runtimes: ONNX Runtime (fp32, int8) and model2vec static models, checked
against PyTorch on a tiny sentence-transformers model made in the test."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from eclip.cli import app
from eclip.encoders import load_encoder, parse_model_spec
from eclip.encoders import onnx as onnx_rt
from eclip.encoders import static as static_mod
from eclip.errors import ModelError

TITLES = [
    "Sony WH-1000XM4 Wireless Noise Cancelling Headphones Black",
    "sony wh1000xm4 headphones",
    "Samsung 870 EVO 1TB 2.5 inch SATA SSD",
    "Samsung 870 EVO 2TB SSD",
    "a",
    "Kingston Canvas Select Plus 128GB microSDXC card with SD adapter, class 10, UHS-I, A1, V10, up to 100MB/s read",
    "",
    "Logitech MX Master 3S mouse",
]


def test_onnx_fp32_gives_pytorch_vectors_in_input_order(tiny_sentence_dir, tmp_path):
    torch_enc = load_encoder(str(tiny_sentence_dir), runtime="torch")
    onnx_enc = load_encoder(
        str(tiny_sentence_dir), runtime="onnx", cache_dir=tmp_path, batch_size=3
    )  # batches of 3 shapes
    assert torch_enc.runtime == "torch" and onnx_enc.runtime == "onnx"
    ref, got = torch_enc.encode(TITLES), onnx_enc.encode(TITLES)  # mixed lengths: sorted inside, unsorted out
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.einsum("ij,ij->i", ref, got).min() > 0.99999
    assert onnx_enc.describe() == torch_enc.describe()  # same vectors, same identity: one may resume the other
    exported = list((tmp_path / "onnx").glob("*-fp32.onnx"))
    assert len(exported) == 1 and exported[0].name.startswith(torch_enc.describe()["weights"])
    mtime = exported[0].stat().st_mtime_ns
    load_encoder(str(tiny_sentence_dir), runtime="onnx", cache_dir=tmp_path)
    assert exported[0].stat().st_mtime_ns == mtime  # the cached export is reused


def test_onnx_int8_is_checked_against_fp32(tiny_sentence_dir, tmp_path, monkeypatch):
    enc = load_encoder(str(tiny_sentence_dir), runtime="onnx-int8", cache_dir=tmp_path)
    assert enc.describe()["runtime"] == "onnx-int8"  # int8 vectors differ: part of the identity
    monkeypatch.setattr(onnx_rt, "INT8_MIN_COSINE", 1.01)  # no int8 model can reach it
    with pytest.raises(ModelError, match=r"mean cosine of [01]\.\d+ to fp32.*below 1.01.*--runtime onnx"):
        enc.encode(TITLES)
    monkeypatch.setattr(onnx_rt, "INT8_MIN_COSINE", 0.5)
    enc = load_encoder(str(tiny_sentence_dir), runtime="onnx-int8", cache_dir=tmp_path)
    out = enc.encode(TITLES)
    ref = load_encoder(str(tiny_sentence_dir), runtime="torch").encode(TITLES)
    cos = np.einsum("ij,ij->i", ref, out)
    assert enc._onnx.checked_cosine == pytest.approx(float(cos.mean()), abs=1e-4)


def test_runtime_errors_are_clear(tiny_sentence_dir, tiny_clip_dir):
    with pytest.raises(ModelError, match="unknown runtime 'tensorrt'"):
        load_encoder(str(tiny_sentence_dir), runtime="tensorrt")
    with pytest.raises(ModelError, match="runs on the CPU"):
        onnx_rt.resolve_runtime("onnx", "cuda:0")
    assert onnx_rt.resolve_runtime("auto", "cuda") == "torch" and onnx_rt.resolve_runtime("auto", "cpu") == "onnx"
    with pytest.raises(ModelError, match="runs sentence-transformers text towers"):
        load_encoder(str(tiny_clip_dir), runtime="onnx")


def test_static_model_is_distilled_once_and_encodes(tiny_sentence_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ECLIP_CACHE_DIR", str(tmp_path))  # distilled once per machine, here
    spec = parse_model_spec(f"static:{tiny_sentence_dir}")
    assert spec.kind == "static" and not spec.has_images
    enc = load_encoder(f"static:{tiny_sentence_dir}")
    assert enc.folder.parent == tmp_path / "static"
    out = enc.encode(TITLES)
    assert out.dtype == np.float32 and out.shape == (len(TITLES), enc.dim)
    norms = np.linalg.norm(out, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    assert enc.describe()["kind"] == "model2vec" and enc.describe()["distilled_from"]["folder"] == str(
        tiny_sentence_dir
    )
    # a second load finds the distilled model in the cache
    monkeypatch.setattr(static_mod, "distill_static", lambda *a, **k: pytest.fail("distilled twice"))
    again = load_encoder(f"static:{tiny_sentence_dir}")
    np.testing.assert_array_equal(again.encode(TITLES), out)
    # the distilled folder is itself a model spec
    assert parse_model_spec(str(enc.folder)).kind == "static"
    with pytest.raises(ModelError, match="neither a model2vec folder"):
        parse_model_spec(f"static:{tmp_path}")


def test_cli_embed_and_dedupe_record_the_runtime(tiny_sentence_dir, tmp_path):
    cat = tmp_path / "cat.csv"
    pl.DataFrame({"id": [str(i) for i in range(len(TITLES))], "title": [t or "x" for t in TITLES]}).write_csv(cat)
    runner = CliRunner()
    r = runner.invoke(
        app, ["embed", str(cat), "--out", str(tmp_path / "emb"), "--model", str(tiny_sentence_dir), "--runtime", "onnx"]
    )
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "emb" / "manifest.json").read_text())
    assert manifest["runtime"] == "onnx" and list((tmp_path / "emb" / "runtime" / "onnx").glob("*.onnx"))
    # torch resumes onnx's embeddings: nothing is embedded again
    r = runner.invoke(
        app,
        ["embed", str(cat), "--out", str(tmp_path / "emb"), "--model", str(tiny_sentence_dir), "--runtime", "torch"],
    )
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "emb" / "manifest.json").read_text())["embedded_rows"] == 0
    r = runner.invoke(
        app,
        ["dedupe", str(cat), "--out", str(tmp_path / "run"), "--model", f"static:{tiny_sentence_dir}"],
        env={"ECLIP_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["model"]["kind"] == "model2vec"
    assert len(pl.read_parquet(tmp_path / "run" / "groups.parquet")) == len(TITLES)
    r = runner.invoke(app, ["dedupe", str(cat), "--out", str(tmp_path / "run2"), "--runtime", "fast"])
    said = " ".join(r.output.replace("│", " ").split())  # Typer's error box, unwrapped
    assert r.exit_code == 2 and "'fast' is not one of 'auto', 'torch', 'onnx', 'onnx-int8'" in said
