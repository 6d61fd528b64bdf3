"""The two-tier text match (``dedupe --cascade``): which pairs the second model sees, how the
tiers' cosines are merged, the rescoring, and the CLI run end to end on Abt-Buy rows."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from conftest import abt_head, run_main

from eclip.encoders import load_encoder
from eclip.encoders import onnx as onnx_rt
from eclip.errors import EclipError
from eclip.matcher import ModalityThresholds, ScoreWeights
from eclip.matcher.cascade import merge_cosines, uncertain_rows
from eclip.matcher.pair_scoring import PairInputs, score_candidates, with_embedding_cosines


def test_uncertain_rows_are_the_rows_of_pairs_inside_the_band():
    a = np.array([0, 1, 2, 3, 4, 5])
    b = np.array([1, 2, 3, 4, 5, 6])
    p = np.array([0.001, 0.5, 0.999, np.nan, 0.2, 0.98], dtype=np.float32)
    got = uncertain_rows(a, b, p, band=0.01)
    assert got.rows.tolist() == [1, 2, 4, 5, 6] and got.pairs == 3 and not got.capped
    assert uncertain_rows(a, b, p, band=0.1).rows.tolist() == [1, 2, 4, 5]  # 0.98 is sure at 0.1
    capped = uncertain_rows(a, b, p, band=0.01, max_rows=4)  # most uncertain first: (1,2) 0.5, (4,5) 0.2
    assert capped.rows.tolist() == [1, 2, 4, 5] and capped.capped
    with pytest.raises(EclipError, match="band"):
        uncertain_rows(a, b, p, band=0.5)


def test_merged_cosines_take_the_second_tier_and_map_the_rest_monotonically():
    rng = np.random.default_rng(0)
    first = rng.uniform(0.2, 0.9, 400).astype(np.float32)
    second = np.where(rng.random(400) < 0.5, np.nan, 0.5 * first + 0.4).astype(np.float32)  # another scale
    first[:3] = np.nan  # rows without text stay without
    merged = merge_cosines(first, second)
    have = np.isfinite(second) & np.isfinite(first)
    assert np.array_equal(merged.refined, have) and merged.calibration_pairs == int(have.sum())
    np.testing.assert_array_equal(merged.cosines[have], second[have])
    assert np.isnan(merged.cosines[:3]).all()
    mapped = ~have & np.isfinite(first)
    np.testing.assert_allclose(merged.cosines[mapped], 0.5 * first[mapped] + 0.4, atol=0.01)  # into the second's scale
    order = np.argsort(first[mapped])
    assert np.all(np.diff(merged.cosines[mapped][order]) >= -1e-6)  # no static ranking reordered


def test_rescoring_with_new_cosines_equals_scoring_afresh():
    rng = np.random.default_rng(1)
    n = 30
    vecs = rng.normal(size=(n, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    import scipy.sparse as sp

    tfidf = sp.csr_matrix(np.abs(rng.normal(size=(n, 12))).astype(np.float32))
    tfidf = sp.csr_matrix(tfidf.multiply(1 / np.sqrt(tfidf.multiply(tfidf).sum(axis=1))))
    codes = [frozenset({"x1"}) if i % 3 == 0 else frozenset() for i in range(n)]
    has = np.ones(n, dtype=bool)
    has[4] = False
    a, b = np.array([0, 1, 2, 3, 4, 6]), np.array([3, 2, 5, 9, 7, 9])
    w, t = ScoreWeights(), ModalityThresholds()

    def inputs(cos):
        return PairInputs(("text",), vecs, None, None, None, has, has, has, tfidf, codes, None, None, None, w, t, cos)

    old = rng.uniform(0, 1, len(a)).astype(np.float32)
    new = rng.uniform(0, 1, len(a)).astype(np.float32)
    signals, _ = score_candidates(a, b, inputs(old))
    moved, score = with_embedding_cosines(signals, new, w, t)
    ref_signals, ref_score = score_candidates(a, b, inputs(new))
    np.testing.assert_allclose(moved["text_score"], ref_signals["text_score"], atol=1e-6)
    np.testing.assert_allclose(score, ref_score, atol=1e-6)
    assert np.isnan(score[4]) == np.isnan(ref_score[4])  # row 4 has no text


def test_int8_without_vnni_is_said_once(monkeypatch):
    from eclip.progress import console

    monkeypatch.setattr(onnx_rt, "int8_instructions", lambda: None)
    monkeypatch.setattr(onnx_rt, "_int8_notice_shown", False)
    with console.capture() as cap:
        onnx_rt.int8_notice()
        onnx_rt.int8_notice()
    assert cap.get().count("no int8 dot-product instructions") == 1
    monkeypatch.setattr(onnx_rt, "int8_instructions", lambda: "AVX512VNNI")
    monkeypatch.setattr(onnx_rt, "_int8_notice_shown", False)
    with console.capture() as cap:
        onnx_rt.int8_notice()
    assert cap.get() == ""


def test_cascade_cli_embeds_only_uncertain_rows_and_uses_their_cosines(tmp_path_factory, tiny_sentence_dir):
    catalog = abt_head(tmp_path_factory, 300, "cascade")
    out = tmp_path_factory.mktemp("cascade-run")
    args = ("dedupe", catalog, "--out", out, "--model", "minilm-static", "--cascade", tiny_sentence_dir)
    code, text = run_main(*args, "--runtime", "torch", "--cascade-band", "0.2")
    assert code == 0, text
    m = json.loads((out / "manifest.json").read_text())
    c = m["matching"]["cascade"]
    assert 2 <= c["rows"] < 300 and c["rows"] == len(pl.read_parquet(out / "cascade" / "rows.parquet"))
    assert c["refined_pairs"] >= c["uncertain_pairs"] > 0 and "relearn" in m["timings_s"]
    assert f"embedding their {c['rows']:,} row(s)" in text and "uncertain pairs" in text
    # the refined pairs carry the second model's own cosine
    rows = pl.read_parquet(out / "cascade" / "rows.parquet")
    vec = dict(
        zip(rows["id"].to_list(), load_encoder(str(tiny_sentence_dir), runtime="torch").encode(rows["text"].to_list()))
    )
    pairs = pl.read_parquet(out / "pairs.parquet").filter(
        pl.col("id_a").is_in(list(vec)) & pl.col("id_b").is_in(list(vec))
    )
    assert len(pairs) == c["refined_pairs"] + c["new_pairs"] and c["new_pairs"] > 0
    assert (pairs["source"] == "cascade").sum() == c["new_pairs"]  # proposed by the second model's kNN
    assert m["counts"]["candidate_pairs"] == len(pl.read_parquet(out / "pairs.parquet"))
    want = [float(vec[x] @ vec[y]) for x, y in zip(pairs["id_a"], pairs["id_b"])]
    np.testing.assert_allclose(pairs["cos_embedding"].to_numpy(), want, atol=1e-4)
    # a rerun embeds nothing again; without the second model's kNN no pair is its own
    code, text = run_main(*args, "--runtime", "torch", "--cascade-band", "0.2", "--no-cascade-knn")
    again = json.loads((out / "manifest.json").read_text())
    assert code == 0 and again["matching"]["cascade"]["reused_rows"] == c["rows"]
    assert "new_pairs" not in again["matching"]["cascade"]
    assert again["counts"]["candidate_pairs"] == m["counts"]["candidate_pairs"] - c["new_pairs"]
    assert not (pl.read_parquet(out / "pairs.parquet")["source"] == "cascade").any()
    code, text = run_main(*args, "--cascade-band", "0.7")
    assert code == 2 and "cascade_band" in text and "[0, 0.5)" in text
