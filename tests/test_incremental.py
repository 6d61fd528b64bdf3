"""Incremental dedup: new listings against an index and its groups; existing ids stay stable."""

import numpy as np
import polars as pl
import pytest
from test_cli import abt_subset, run  # noqa: F401  (fixture)

from eclip.errors import EclipError
from eclip.matcher.incremental import assign_incremental


def test_assign_joins_best_existing_group_and_numbers_new_groups_after_the_last():
    old_groups = np.array([10, 10, 11, 12])  # index rows 0-3
    # new rows: 0~1 (a new pair); 1 also matches index row 2 (group 11) and 3 (group 12, weaker)
    # 2~3 a new pair matching nothing old; 4 alone; 5 matches index row 0 below the threshold
    a, b, s = np.array([0, 2]), np.array([1, 3]), np.array([0.9, 0.8], np.float32)
    new_rows, old_rows = np.array([1, 1, 5]), np.array([2, 3, 0])
    old_score = np.array([0.95, 0.7, 0.5], np.float32)
    r = assign_incremental(6, a, b, s, new_rows, old_rows, old_score, old_groups, 0.6, "components")
    assert r.group_id.tolist() == [11, 11, 13, 13, 14, 15]
    assert r.joined.tolist() == [True, True, False, False, False, False]
    assert r.also_matches[0] == [12] and r.also_matches[1] == [12]  # reported, not merged
    assert r.partner_old.tolist() == [-1, 2, -1, -1, -1, -1]
    assert r.partner_new.tolist()[:4] == [1, -1, 3, 2]  # row 1: its best match is in the index
    assert r.new_sizes.tolist() == [2, 2, 2, 2, 1, 1]


def test_mutual_joins_only_index_rows_still_alone():
    old_groups = np.array([10, 10, 11])  # index rows 0, 1 already a pair; row 2 alone
    none = np.zeros(0, np.int64)
    # new 0 -> index 0 (taken: stays apart), new 1 -> index 2 (alone: joins), new 2 -> index 2 weaker
    r = assign_incremental(
        3,
        none,
        none,
        np.zeros(0, np.float32),
        np.array([0, 1, 2]),
        np.array([0, 2, 2]),
        np.array([0.95, 0.9, 0.8], np.float32),
        old_groups,
        0.6,
        "mutual",
    )
    assert r.group_id.tolist() == [12, 11, 13]
    assert r.joined.tolist() == [False, True, False]
    assert r.also_matches[0] == [10] and r.also_matches[2] == [11]  # reported for review


def test_dedupe_against_index_keeps_group_ids_stable(abt_subset, tmp_path):  # noqa: F811
    cat = pl.read_csv(abt_subset / "catalog.csv", infer_schema=False).filter(pl.col("name").is_not_null())
    matches = pl.read_csv(abt_subset / "matches.csv", infer_schema=False)
    later = set(matches["id_b"].to_list()[::2])  # half of the Buy side arrives later
    cat.filter(~pl.col("id").is_in(list(later))).write_csv(tmp_path / "day0.csv")
    cat.filter(pl.col("id").is_in(list(later))).write_csv(tmp_path / "day1.csv")

    assert run("dedupe", tmp_path / "day0.csv", "--out", tmp_path / "r0").exit_code == 0
    r = run(
        "index",
        "build",
        tmp_path / "r0" / "embeddings",
        "--out",
        tmp_path / "idx",
        "--groups",
        tmp_path / "r0" / "groups.parquet",
    )
    assert r.exit_code == 0, r.output
    r0 = pl.read_parquet(tmp_path / "r0" / "groups.parquet")

    r = run("dedupe", tmp_path / "day1.csv", "--against", tmp_path / "idx", "--out", tmp_path / "r1")
    assert r.exit_code == 0, r.output
    r1 = pl.read_parquet(tmp_path / "r1" / "groups.parquet")
    assert r1.height == len(later) and set(r1["id"]) == later
    joined = r1.filter(pl.col("status") == "joined")
    assert joined.height >= 0.6 * len(later)  # each later row has its Abt partner in the index
    assert set(joined["group_id"]) <= set(r0["group_id"])
    assert (r1.filter(pl.col("status") != "joined")["group_id"] > r0["group_id"].max()).all()
    partner = dict(zip(matches["id_b"], matches["id_a"]))
    right = sum(partner.get(i) == m for i, m in zip(joined["id"], joined["matched_to"]))
    assert right / joined.height >= 0.8

    r = run("index", "add", tmp_path / "idx", tmp_path / "day1.csv", "--groups", tmp_path / "r1" / "groups.parquet")
    assert r.exit_code == 0, r.output
    assert "added" in r.output
    from eclip.index import open_index_dir

    idx = open_index_dir(tmp_path / "idx")
    assert len(idx.ids) == cat.height
    kept = idx.groups().join(r0.select("id", pl.col("group_id").alias("before")), on="id")
    assert kept.height == r0.filter(pl.col("status") != "empty_text").height
    assert (kept["group_id"] == kept["before"]).all()  # existing ids unchanged
    after = idx.groups().join(r1.select("id", pl.col("group_id").alias("assigned")), on="id")
    assert (after["group_id"] == after["assigned"]).all()

    r = run("dedupe", tmp_path / "day1.csv", "--against", tmp_path / "idx", "--out", tmp_path / "r2")
    assert r.exit_code == 0, r.output
    r2 = pl.read_parquet(tmp_path / "r2" / "groups.parquet").join(r1.select("id", "group_id"), on="id", suffix="_1")
    assert (r2["status"] == "already_indexed").all() and (r2["group_id"] == r2["group_id_1"]).all()

    # options --against cannot honour are refused, not ignored (issue 22 item 5, issue 23 row 12)
    review = tmp_path / "review.csv"
    review.write_text("group_id,id,decision\n1,x,same\n")
    for extra, words in (
        (["--review", review], "does not use --review"),
        (["--signals", "text", "--phash-max-distance", "3"], "does not use --signals, --phash-max-distance"),
        (["--model", "minilm-static"], "was built with all-MiniLM-L6-v2, not minilm-static"),
    ):
        r = run("dedupe", tmp_path / "day1.csv", "--against", tmp_path / "idx", "--out", tmp_path / "r3", *extra)
        assert isinstance(r.exception, EclipError), (extra, r.output)
        assert words in " ".join(str(r.exception).split()), (extra, str(r.exception))
        assert not (tmp_path / "r3" / "groups.parquet").exists()


@pytest.mark.parametrize("bad", ["no-index"])
def test_against_a_missing_index_is_a_clear_error(abt_subset, tmp_path, bad):  # noqa: F811
    r = run("dedupe", abt_subset / "catalog.csv", "--against", tmp_path / bad, "--out", tmp_path / "r")
    from eclip.errors import RunDirError

    assert isinstance(r.exception, RunDirError) and "not an index directory" in str(r.exception)


def test_cli_sharded_build_from_a_catalog_then_merge(abt_subset, tmp_path):  # noqa: F811
    idx = tmp_path / "idx"
    for shard in ("1/2", "0/2"):
        r = run("index", "build", abt_subset / "catalog.csv", "--out", idx, "--shard", shard, "--factory", "IVF4,Flat")
        assert r.exit_code == 0, r.output
    r = run("index", "info", idx)
    from eclip.errors import RunDirError

    assert isinstance(r.exception, RunDirError) and "run `eclip index merge`" in str(r.exception)
    r = run("index", "merge", idx)
    assert r.exit_code == 0, r.output
    r = run("index", "info", idx)
    assert r.exit_code == 0 and '"merged_shards": 2' in r.output and '"factory": "IVF4,Flat"' in r.output
    r = run("index", "query", idx, "--text", "Linksys EtherFast 8-Port Switch", "--k", "3")
    assert r.exit_code == 0 and "38477" in r.output  # Abt id of "Linksys EtherFast 8-Port 10/100 Switch - EZXS88W"
