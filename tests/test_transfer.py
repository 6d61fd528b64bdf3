"""Label-free defaults on the cases that broke them (issue 32): a catalog without duplicates,
one of identical rows, and a precomputed pHash column; the CLI on ../shared/data subsets."""

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from eclip.cli import app
from eclip.encoders.lexical import extract_quantities
from eclip.matcher.constraints import identical_text_constraints
from eclip.matcher.signals import code_similarity, quantity_verdict

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_catalog_without_duplicates_comes_out_almost_all_singletons(shared_data, tmp_path):
    # the first 100 rows of Abt-Buy hold no gold pair
    catalog = pl.read_csv(shared_data / "abt_buy" / "catalog.csv", infer_schema=False).head(100)
    gold = pl.read_csv(shared_data / "abt_buy" / "matches.csv", infer_schema=False)
    ids = set(catalog["id"])
    assert not any(x in ids and y in ids for x, y in zip(gold["id_a"], gold["id_b"]))
    catalog.write_csv(tmp_path / "c.csv")
    r = run("dedupe", tmp_path / "c.csv", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    groups = pl.read_parquet(tmp_path / "run" / "groups.parquet")
    assert groups.filter(pl.col("group_size") > 1)["group_id"].n_unique() <= 2
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["matching"]["learned"]["mixture"]["threshold_at_probability_0.5"] >= 0.65  # the floor held
    assert m["counts"]["predicted_matches_per_row"] <= 0.1


def test_identical_rows_always_share_one_group(tmp_path):
    title = "Sony WH-1000XM3 Wireless Noise Cancelling Headphones Black"
    pl.DataFrame({"id": [f"r{i}" for i in range(300)], "title": [title] * 300}).write_csv(tmp_path / "c.csv")
    for method in ("auto", "mutual"):
        out = tmp_path / method
        r = run("dedupe", tmp_path / "c.csv", "--out", out, "--method", method)
        assert r.exit_code == 0, r.output
        groups = pl.read_parquet(out / "groups.parquet")
        assert groups["group_id"].n_unique() == 1 and groups["group_size"].min() == 300
        assert json.loads((out / "manifest.json").read_text())["counts"]["identical_text_links"] == 299


def test_identical_text_constraints_chain_each_set_once():
    c = identical_text_constraints(["A  b", "x", "a b", "", "", "A B", "y"])
    assert sorted(zip(c.must_a.tolist(), c.must_b.tolist())) == [(0, 2), (2, 5)]  # empty texts link nothing
    assert len(c.cannot_a) == 0


def test_near_twin_numbers_and_codes_conflict():
    hp901, hp95 = extract_quantities("HP 901 Black Ink Cartridge"), extract_quantities("HP 95 Tri-color Inkjet")
    assert hp901["number"] == {901.0} and quantity_verdict(hp901, hp95) == -1
    assert quantity_verdict(extract_quantities("NETGEAR AV 500"), extract_quantities("NETGEAR AV 500 kit")) == 1
    assert "number" not in extract_quantities("5.40 % 3:26 $ 1.29 1,299.00")  # decimals, times, prices
    # a generic shared token, specific model codes that differ: a conflict
    assert code_similarity(frozenset({"2line", "kxtsc14w"}), frozenset({"2line", "kxts208w"})) == -1.0
    # a long shared code with short unrelated extras: the same product
    assert code_similarity(frozenset({"pslx350h", "a1b2"}), frozenset({"pslx350h", "zz99"})) == 0.0


def test_short_model_tokens_and_colours_tell_near_twins_apart():
    q = extract_quantities
    # camera bodies one short model token apart, and the same body in two shops
    assert quantity_verdict(q("Canon EOS 6D (Body)"), q("Canon EOS 80D DSLR Camera (Body)")) == -1
    assert quantity_verdict(q("Canon EOS 70D Body Only"), q("Used Canon EOS 70D DSLR")) == 1
    assert q("Canon EOS Rebel T7i")["model"] == {"t7i"}
    # ordinals, multipliers, 4K and dotted references are no model tokens
    assert "model" not in q("2nd gen 4x zoom 4K T36.1.316.72")
    # colours are read in several languages and mapped to one name
    assert q("Nike Train Speed 4 - Negro/Blanco")["colour"] == {"black", "white"}
    assert quantity_verdict(q("Nike Train Speed 4 Black/White"), q("Nike Train Speed 4 - Negro/Blanco")) == 1
    assert quantity_verdict(q("GoPro HERO4 Silver"), q("GoPro HERO4 Black")) == -1
    assert "colour" not in q("Sony Blu-ray player BDP-S3700 or DVD")  # "blu", "or": no colours here


@pytest.fixture
def hashed_catalog(shared_data, tmp_path):
    catalog = pl.read_csv(shared_data / "abt_buy" / "catalog.csv", infer_schema=False).head(60)
    # rows 0-9 and 10-19 share a photo one bit apart; the rest have photos far apart
    rng = np.random.default_rng(0)
    hashes = [f"{int(rng.integers(0, 2**63)):016x}" for _ in range(60)]
    for i in range(10):
        hashes[10 + i] = f"{int(hashes[i], 16) ^ 1:016x}"
    path = tmp_path / "c.csv"
    catalog.with_columns(pl.Series("phash", hashes)).write_csv(path)
    return path


def test_a_phash_column_is_a_signal(hashed_catalog, tmp_path):
    r = run("dedupe", hashed_catalog, "--phash-col", "phash", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "phash" in m["matching"]["signals"] and m["index"]["phash"]["from"] == "column phash"
    pairs = pl.read_parquet(tmp_path / "run" / "pairs.parquet")
    assert pairs.filter(pl.col("phash_distance") == 1).height == 10
    assert m["counts"]["matched_pairs_by_signal"]["phash"] == 10


def test_a_bad_phash_value_names_the_row_and_column(hashed_catalog, tmp_path):
    bad = pl.read_csv(hashed_catalog, infer_schema=False).with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("not-a-hash")).otherwise(pl.col("phash")).alias("phash")
    )
    bad.write_csv(tmp_path / "bad.csv")
    from conftest import run_main

    code, said = run_main("dedupe", tmp_path / "bad.csv", "--phash-col", "phash", "--out", tmp_path / "run")
    assert code == 2 and "Traceback" not in said
    assert "column 'phash', row 5" in said and "'not-a-hash' is not a 64-bit pHash" in said
    code, said = run_main(
        "dedupe", hashed_catalog, "--phash-col", "phash", "--image-col", "name", "--out", tmp_path / "r"
    )
    assert code == 2 and "phash_col and image_col are both set" in said


def test_any_local_sentence_transformers_folder_is_a_model(shared_data, tmp_path):
    """--model PATH: the way to bring a better (e.g. multilingual) encoder; here the bundled
    MiniLM's own folder stands in for one."""
    from conftest import run_main

    from eclip.encoders.spec import bundled_minilm_path

    catalog = pl.read_csv(shared_data / "abt_buy" / "catalog.csv", infer_schema=False).head(30)
    catalog.write_csv(tmp_path / "c.csv")
    folder = bundled_minilm_path()
    r = run("dedupe", tmp_path / "c.csv", "--model", folder, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["embeddings"]["dim"] == 384 and str(folder.resolve()) in json.dumps(m["model"])
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "weights.bin").write_bytes(b"\0")
    code, said = run_main("dedupe", tmp_path / "c.csv", "--model", tmp_path / "not-a-model", "--out", tmp_path / "o")
    assert code == 2 and "Traceback" not in said and len(said.strip().splitlines()) == 1
    assert "nor modules.json (a sentence-transformers model)" in said
