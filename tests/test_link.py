"""eclip link: matching one catalog against another (issue 18)."""

import json
import shutil

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from eclip.cli import app
from eclip.errors import RunDirError
from eclip.matcher.assignment import mutual_best, one_to_many, one_to_one

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------- assignment


def test_one_to_one_beats_greedy_where_greedy_is_wrong():
    # L0-R0 is the single strongest pair, but taking it leaves L1 and R1 unmatched:
    # L0-R1 + L1-R0 = 0.8 + 0.85 = 1.65 > 0.9
    left = np.array([0, 0, 1])
    right = np.array([0, 1, 0])
    w = np.array([0.9, 0.8, 0.85])
    keep = one_to_one(2, 2, left, right, w)
    assert keep.tolist() == [False, True, True]
    assert mutual_best(2, 2, left, right, w).tolist() == [True, False, False]  # the greedy answer
    # a second, independent component is matched on its own
    left2 = np.concatenate([left, [5]])
    right2 = np.concatenate([right, [7]])
    assert one_to_one(6, 8, left2, right2, np.append(w, 0.1)).tolist() == [False, True, True, True]


def test_one_to_one_uses_each_row_once_and_one_to_many_only_right_once():
    rng = np.random.default_rng(0)
    left, right = rng.integers(0, 30, 400), rng.integers(0, 25, 400)
    pairs = np.unique(np.c_[left, right], axis=0)
    left, right = pairs[:, 0], pairs[:, 1]
    w = rng.random(len(left)) + 0.01
    keep = one_to_one(30, 25, left, right, w)
    assert len(np.unique(left[keep])) == keep.sum() == len(np.unique(right[keep])) == 25  # a full matching exists here
    greedy = mutual_best(30, 25, left, right, w)
    assert w[keep].sum() >= w[greedy].sum() - 1e-9
    many = one_to_many(30, 25, left, right, w)
    assert len(np.unique(right[many])) == many.sum()


# ---------------------------------------------------------------- the command, tiny model


def tiny_catalogs(folder):
    left = pl.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "title": [
                "Sony Bravia KDL40V TV 40 inch",
                "Sony Bravia KDL40V TV 40 inch",
                "Canon EOS 450D camera kit",
                "Panasonic toaster NT-D700",
            ],
        }
    )
    right = pl.DataFrame(
        {
            "id": ["1", "2", "3"],
            "title": ["Bosch kettle TWK7801 1.7 l", "Sony Bravia KDL40V 40in LCD TV", "Canon EOS 450D camera body kit"],
        }
    )
    left.write_csv(folder / "left.csv")
    right.write_csv(folder / "right.csv")
    return folder / "left.csv", folder / "right.csv"


@pytest.mark.parametrize("mode", ["one-to-one", "one-to-many", "many-to-many"])
def test_links_are_cross_source_and_equal_ids_stay_apart(tiny_sentence_dir, tmp_path, mode):
    left, right = tiny_catalogs(tmp_path)
    out = tmp_path / "run"
    r = run(
        "link",
        left,
        right,
        "--out",
        out,
        "--model",
        tiny_sentence_dir,
        "--mode",
        mode,
        "--threshold",
        "0.5",
        "--k",
        "3",
    )
    assert r.exit_code == 0, r.output
    links = pl.read_parquet(out / "links.parquet")
    pairs = set(zip(links["left_id"], links["right_id"]))
    # left rows 1 and 2 are twins: no pair inside one source exists to output; the TV links to RIGHT's 2
    assert ("1", "2") in pairs or ("2", "2") in pairs
    assert ("3", "3") in pairs
    # the same id value on both sides is two different rows: LEFT 1 (a TV) is not RIGHT 1 (a kettle)
    assert ("1", "1") not in pairs and ("4", "1") not in pairs
    if mode == "one-to-one":
        assert links["left_id"].is_unique().all() and links["right_id"].is_unique().all()
        assert len(pairs & {("1", "2"), ("2", "2")}) == 1
    if mode == "one-to-many":
        assert links["right_id"].is_unique().all()
    cand = pl.read_parquet(out / "candidates.parquet")
    assert set(cand["left_id"]) <= {"1", "2", "3", "4"} and set(cand["right_id"]) <= {"1", "2", "3"}
    unmatched = pl.read_parquet(out / "unmatched_right.parquet")
    assert "1" in unmatched["id"].to_list()  # the kettle
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["job"] == "link" and manifest["matching"]["mode"] == mode
    assert manifest["counts"]["links"] == len(links)


def _other_weights(src, dst):
    """A copy of a sentence-transformers folder whose transformer weights differ."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    for f in dst.rglob("*.safetensors"):
        tensors = load_file(f)
        save_file({k: v + 0.01 for k, v in tensors.items()}, f)
    return dst


def test_sides_embedded_with_different_models_are_refused(tiny_sentence_dir, tmp_path):
    left, right = tiny_catalogs(tmp_path)
    other = _other_weights(tiny_sentence_dir, tmp_path / "other-st")
    assert run("embed", left, "--out", tmp_path / "el", "--model", tiny_sentence_dir).exit_code == 0
    r = run("embed", right, "--out", tmp_path / "er", "--model", other)
    assert r.exit_code == 0, r.output
    from eclip import api

    with pytest.raises(RunDirError, match="embedded with different models"):
        api.link(
            left,
            right,
            tmp_path / "run",
            api.LinkConfig(left_embeddings=tmp_path / "el", right_embeddings=tmp_path / "er"),
        )
    assert not (tmp_path / "run" / "links.parquet").exists()


def test_unknown_mode_is_one_clear_line(tmp_path):
    from eclip import api

    with pytest.raises(
        api.EclipError, match="LinkConfig.mode is 'best'; choose one of one-to-one, one-to-many, many-to-many"
    ):
        api.link(tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "o", api.LinkConfig(mode="best"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- real data


def test_link_abt_against_buy_then_eval(tmp_path):
    from conftest import SHARED

    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    matches = pl.read_csv(SHARED / "abt_buy" / "matches.csv", infer_schema=False).head(120)
    catalog = pl.read_csv(SHARED / "abt_buy" / "catalog.csv", infer_schema=False)
    catalog.filter(pl.col("id").is_in(matches["id_a"].to_list())).write_csv(tmp_path / "abt.csv")
    catalog.filter(pl.col("id").is_in(matches["id_b"].to_list())).write_csv(tmp_path / "buy.csv")
    matches.write_csv(tmp_path / "matches.csv")
    out = tmp_path / "run"
    r = run("link", tmp_path / "abt.csv", tmp_path / "buy.csv", "--out", out)
    assert r.exit_code == 0, r.output
    links = pl.read_parquet(out / "links.parquet")
    assert {"left_id", "right_id", "score", "match_probability", "cos_embedding", "cos_tfidf", "code", "rank"} <= set(
        links.columns
    )
    assert set(links["left_id"]) <= set(matches["id_a"]) and set(links["right_id"]) <= set(matches["id_b"])
    r = run("eval", out, "--gold", tmp_path / "matches.csv")
    assert r.exit_code == 0, r.output
    result = json.loads((out / "eval.json").read_text())
    assert result["task"] == "link" and result["metrics"]["f1"] > 0.85
    assert result["metrics"]["links"] == len(links)
    r = run("report", out, "--gold", tmp_path / "matches.csv")
    assert r.exit_code == 0, r.output
    html = (out / "report.html").read_text()
    assert "eclip link report" in html and "Cross-pair precision / recall" in html and "abt.csv / buy.csv" in html
    review = pl.read_csv(out / "review.csv", infer_schema=False)
    assert review.columns == ["left_id", "right_id", "decision", "left_title", "right_title"] and len(review) == len(
        links
    )
