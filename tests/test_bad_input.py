"""Nothing a reviewer wrote is lost, and no input is silently rewritten (issue 34).

Each case feeds the real file (``tests/data/bad``) or command and asserts the outcome: a
named one-line error, or the exact expected output, and no input file changed.
"""

import hashlib
import json
import os
import warnings
from pathlib import Path

import polars as pl
import pytest
from conftest import abt_head, run_main

from eclip.catalog import load_catalog
from eclip.errors import CatalogError

BAD = Path(__file__).parent / "data" / "bad"
FAST = ("--model", "minilm-static")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def abt200(tmp_path_factory) -> Path:
    return abt_head(tmp_path_factory, 200, "abt200")


@pytest.fixture
def run(abt200, tmp_path) -> Path:
    """A dedupe run of 200 Abt-Buy rows, with its report and blank review file."""
    out = tmp_path / "run"
    code, said = run_main("dedupe", abt200, "--out", out, *FAST)
    assert code == 0, said
    code, said = run_main("report", out)
    assert code == 0, said
    return out


def fill(review: Path, decisions: dict[int, str]) -> pl.DataFrame:
    """Fill the ``decision`` of review rows (0-based) as a reviewer would, and save."""
    df = pl.read_csv(review, infer_schema=False)
    df = df.with_columns(
        pl.Series("decision", [decisions.get(i, d or "") for i, d in enumerate(df["decision"].to_list())])
    )
    df.write_csv(review)
    return df


# --- 1. a filled review file survives report, dedupe --review and label -------------------------


def test_report_again_keeps_a_filled_review(run, abt200):
    review = run / "review.csv"
    fill(review, {0: "same", 1: "different"})
    before = digest(review)
    code, said = run_main("report", run)  # same run: the decisions are merged into the new listing
    assert code == 0 and "kept the 2 decision(s) already filled in" in said
    assert digest(review) == before
    code, said = run_main("dedupe", abt200, "--out", run / "reviewed", *FAST, "--review", review)
    assert code == 0, said
    code, said = run_main("label", run, "--batch", "5")
    assert code == 0, said
    assert digest(review) == before  # neither dedupe --review nor label touched it
    # the run's groups change: the filled file is another run's now, so the fresh review goes beside it
    code, said = run_main("dedupe", abt200, "--out", run, *FAST, "--threshold", "0.3")
    assert code == 0, said
    code, said = run_main("report", run)
    assert code == 0 and "review.csv holds decisions (for another run's groups); it is left as it is" in said
    assert digest(review) == before
    fresh = pl.read_csv(run / "review-2.csv", infer_schema=False)
    assert fresh["decision"].fill_null("").eq("").all() and fresh.height > 0


def test_a_review_out_that_is_not_a_review_is_left_alone(run, tmp_path):
    notes = tmp_path / "notes.csv"
    notes.write_text("decision,who\nlater,me\n")
    code, said = run_main("report", run, "--review-out", notes)
    assert code == 0 and "notes.csv holds decisions" in said and (tmp_path / "notes-2.csv").is_file()
    assert notes.read_text() == "decision,who\nlater,me\n"


# --- 3. no command writes over a file it reads --------------------------------------------------


def test_report_refuses_to_write_over_the_catalog(run, abt200):
    before = digest(abt200)
    for option in ("--review-out", "--out"):
        code, said = run_main("report", run, option, abt200)
        assert code == 2 and f"{abt200}: is an input of this command" in said, said
    assert digest(abt200) == before


def test_index_query_refuses_to_write_over_its_catalog(abt200, tmp_path):
    code, said = run_main("embed", abt200, "--out", tmp_path / "emb", *FAST)
    assert code == 0, said
    code, said = run_main("index", "build", tmp_path / "emb", "--out", tmp_path / "idx")
    assert code == 0, said
    before = digest(abt200)
    code, said = run_main("index", "query", tmp_path / "idx", "--catalog", abt200, "--out", abt200)
    assert code == 2 and "is an input of this command" in said and "embedding" not in said  # refused before work
    assert digest(abt200) == before


# --- 4. one stray cp1252 byte ------------------------------------------------------------------


def test_one_stray_byte_is_read_as_cp1252_on_its_line_only(tmp_path):
    code, said = run_main("dedupe", BAD / "mixed_encoding.csv", "--out", tmp_path / "r", *FAST)
    assert code == 0, said
    ids = pl.read_parquet(tmp_path / "r" / "groups.parquet")["id"].to_list()
    assert ids == ["café-1", "b-2", "c-3"]  # UTF-8 lines decoded once, as UTF-8
    notice = "mixed_encoding.csv: 1 line is not UTF-8 (line 3; first bytes 0x80): read as cp1252"
    assert said.count(notice) == 1  # said once, though the job reads the catalog twice
    dialect = json.loads((tmp_path / "r" / "manifest.json").read_text())["inputs"]["dialect"]
    assert dialect["encoding"] == "utf-8" and dialect["not_utf8_lines"] == {
        "count": 1,
        "lines": [3],
        "read_as": "cp1252",
    }
    assert load_catalog(BAD / "mixed_encoding.csv").texts[1] == "Tea € 5 pack"


# --- 5. the formula guard is one-to-one ---------------------------------------------------------


@pytest.mark.parametrize("text", ["=x", "'=x", "''=x", "'a", "a'", "'", "-1", "@sum", "\tx", "plain", ""])
def test_formula_guard_round_trips(text, tmp_path):
    from eclip.matcher.constraints import read_decisions_csv
    from eclip.rundir import neutralise, restore, write_csv

    assert restore(neutralise(text)) == text
    assert not neutralise(text).startswith(("=", "+", "-", "@", "\t"))
    write_csv(pl.DataFrame({"id": [text], "decision": ["same"]}), tmp_path / "f.csv", for_people=True)
    assert read_decisions_csv(tmp_path / "f.csv", ("id",), "file", "")["id"].to_list() == [text]


def test_a_decision_on_one_formula_id_does_not_split_its_twin(tmp_path):
    catalog = tmp_path / "catalog.csv"
    pl.DataFrame(
        {"id": ["=x", "'=x", "y", "z"], "title": ["Sony Bravia KDL40 TV"] * 3 + ["Bosch kettle 1.7 l"]}
    ).write_csv(catalog)
    code, said = run_main("dedupe", catalog, "--out", tmp_path / "r", *FAST)
    assert code == 0, said
    code, said = run_main("report", tmp_path / "r")
    assert code == 0, said
    review = pl.read_csv(tmp_path / "r" / "review.csv", infer_schema=False)
    assert sorted(review["id"].to_list()) == sorted(["'=x", "''=x", "y"])  # '=x escaped as ''=x
    fill(tmp_path / "r" / "review.csv", {review["id"].to_list().index("''=x"): "different"})
    code, said = run_main("dedupe", catalog, "--out", tmp_path / "r2", *FAST, "--review", tmp_path / "r" / "review.csv")
    assert code == 0, said
    groups = pl.read_parquet(tmp_path / "r2" / "groups.parquet")
    group_of = dict(zip(groups["id"].to_list(), groups["group_id"].to_list()))
    assert group_of["=x"] == group_of["y"] != group_of["'=x"]


# --- 7. contradictory review rows ---------------------------------------------------------------


def test_a_review_row_marked_both_ways_is_refused(run, abt200):
    review = run / "review.csv"
    df = pl.read_csv(review, infer_schema=False)
    twice = pl.concat([df.head(2), df.head(1)]).with_columns(pl.Series("decision", ["same", "same", "different"]))
    twice.write_csv(review)
    code, said = run_main("dedupe", abt200, "--out", run / "again", *FAST, "--review", review)
    first = df["id"][0]
    assert (
        code == 2
        and f"rows 1 and 3: id {first!r} of group {df['group_id'][0]} is marked both same and different" in said
    )


# --- 8. ragged rows and ids as written ----------------------------------------------------------


def test_a_short_row_is_refused_with_its_line():
    with pytest.raises(CatalogError) as info:
        load_catalog(BAD / "short_row.csv")
    assert str(info.value) == (
        f"{BAD / 'short_row.csv'}: cannot be read as CSV: line 3 has 2 fields but the header has 3 "
        "(a line cut short, or broken in two?). Fix the line, or add the missing ','s."
    )


def test_empty_last_cells_are_not_short_rows(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text('id,title,brand\n1,Sony TV,\n2,"Kettle\nwith a line break",\n3,Tea,""\n')
    assert load_catalog(f).ids == ["1", "2", "3"]


def test_ids_are_compared_as_written():
    cat = load_catalog(BAD / "padded_ids.csv")
    assert cat.ids == ["X1", " X1"]


# --- 9. linking a file to itself ----------------------------------------------------------------


def test_link_refuses_the_same_file_unless_asked(abt200, tmp_path):
    code, said = run_main("link", abt200, abt200, "--out", tmp_path / "l", *FAST)
    assert code == 2 and "are the same file: every row would link to itself at p = 1" in said
    assert "--allow-same-file" in said and not (tmp_path / "l").exists()
    copy = tmp_path / "copy.csv"
    copy.write_bytes(abt200.read_bytes())
    code, said = run_main("link", abt200, copy, "--out", tmp_path / "l", *FAST)
    assert code == 2 and "are byte-identical copies" in said
    code, said = run_main("link", abt200, abt200, "--out", tmp_path / "l", *FAST, "--allow-same-file")
    assert code == 0, said


# --- 10-12. tracebacks become one line ----------------------------------------------------------


def test_out_naming_a_file_is_one_line(abt200, tmp_path):
    f = tmp_path / "afile"
    f.write_text("keep me")
    code, said = run_main("dedupe", abt200, "--out", f, *FAST)
    assert (
        code == 2
        and said == f"error: {f}: is a file, not a folder; give --out a folder path (new or an earlier run's)."
    )
    code, said = run_main("dedupe", abt200, "--out", f / "sub", *FAST)
    assert code == 2 and f"is below {f}, which is a file" in said
    assert f.read_text() == "keep me"


def test_out_that_cannot_be_written_is_one_line(abt200, tmp_path):
    if os.geteuid() == 0:  # root writes through permissions; a read-only file system stops it
        target = Path("/sys/eclip-out")
        expect = f"error: {target}: cannot create this folder (Operation not permitted)"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "out"
        expect = f"error: {target}: cannot create this folder (Permission denied)"
    code, said = run_main("dedupe", abt200, "--out", target, *FAST)
    assert code == 2 and said.startswith(expect) and "Traceback" not in said


def test_a_truncated_calibration_file_is_one_line(abt200, tmp_path):
    f = BAD / "truncated_calibration.json"
    code, said = run_main("dedupe", abt200, "--out", tmp_path / "r", *FAST, "--calibration", f)
    assert code == 2 and said.startswith(
        f"error: {f}: not valid JSON (Unterminated string starting at: line 1, column 23)"
    )


# --- the misleading messages --------------------------------------------------------------------


def test_eval_with_a_short_gold_row_names_the_line(run):
    code, said = run_main("eval", run / "groups.parquet", "--gold", BAD / "short_gold.csv")
    assert code == 2 and "short_gold.csv: cannot be read as CSV: line 3 has 1 field but the header has 2" in said
    assert "None" not in said


def test_a_gold_file_of_self_pairs_is_refused(run):
    code, said = run_main("eval", run / "groups.parquet", "--gold", BAD / "self_pair_gold.csv")
    assert code == 2 and "every row (1) pairs an id with itself, which says nothing" in said


def test_link_without_an_id_column_names_links_option(abt200, tmp_path):
    no_id = tmp_path / "no_id.csv"
    no_id.write_text("sku,title\n1,Sony TV\n")
    code, said = run_main("link", no_id, abt200, "--out", tmp_path / "l", *FAST)
    assert code == 2 and "Choose one with --left-id-col (or --left-id-col @row to number the rows)" in said
    code, said = run_main("link", abt200, no_id, "--out", tmp_path / "l", *FAST)
    assert code == 2 and "Choose one with --right-id-col" in said


def test_jsonl_with_a_byte_order_mark_is_read():
    cat = load_catalog(BAD / "bom.jsonl")
    assert cat.ids == ["1", "2"] and cat.texts[0] == "Café crème" and cat.dialect.encoding == "utf-8-sig"


def test_pillow_bomb_warning_is_not_leaked(tmp_path):
    from PIL import Image

    from eclip.catalog.images import MAX_IMAGE_PIXELS, ImageFailure, ImageSettings, open_image

    side = int((1.2 * MAX_IMAGE_PIXELS) ** 0.5)  # over Pillow's limit, under twice it: Pillow warns
    Image.new("1", (side, side)).save(tmp_path / "big.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        with pytest.raises(ImageFailure) as info:
            open_image("big.png", ImageSettings(root=tmp_path, cache_dir=tmp_path))
    assert info.value.reason == "too_large" and "the limit is" in str(info.value)


def test_learn_and_eval_refuse_to_write_over_their_inputs(run, tmp_path):
    labels = run / "label.csv"
    code, said = run_main("label", run, "--batch", "4")
    assert code == 0, said
    before = digest(labels)
    code, said = run_main("learn", run, "--out", labels)
    assert code == 2 and f"{labels}: is an input of this command" in said
    assert digest(labels) == before
    groups = run / "groups.parquet"
    before = digest(groups)
    gold = tmp_path / "gold.csv"
    gold.write_text("id_a,id_b\n" + ",".join(pl.read_parquet(groups)["id"].head(2).to_list()) + "\n")
    code, said = run_main("eval", groups, "--gold", gold, "--sweep", "--calibration-out", groups)
    assert code == 2 and f"{groups}: is an input of this command" in said
    assert digest(groups) == before


def test_library_warnings_are_one_line_of_ours():
    """The console script shows a library's warning as eclip's own yellow line, no source shown."""
    from eclip.cli.app import _show_warning
    from eclip.progress import console

    with console.capture() as cap, warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning  # as main() installs it
        warnings.warn("a library complains", UserWarning, stacklevel=1)
    assert cap.get().strip() == "warning: a library complains"


def test_a_truncated_match_model_is_one_line(abt200, tmp_path):
    model = tmp_path / "match_model.json"
    model.write_text('{"format": 3, "kind": "eclip match mo')
    code, said = run_main("dedupe", abt200, "--out", tmp_path / "r", *FAST, "--match-model", model)
    assert code == 2 and said.startswith(f"error: {model}: not a JSON match model") and "Traceback" not in said
