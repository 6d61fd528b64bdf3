"""The CLI end to end on a subset of ../shared/data, with the bundled MiniLM (offline)."""

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from eclip.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def abt_subset(tmp_path_factory):
    from conftest import SHARED

    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    folder = tmp_path_factory.mktemp("abt")
    matches = pl.read_csv(SHARED / "abt_buy" / "matches.csv", infer_schema=False).head(150)
    keep = set(matches["id_a"]) | set(matches["id_b"])
    catalog = pl.read_csv(SHARED / "abt_buy" / "catalog.csv", infer_schema=False)
    sub = catalog.filter(pl.col("id").is_in(list(keep)))
    # one row with no text: reported, kept out of matching, still in the output
    sub = pl.concat([sub, pl.DataFrame({"id": ["empty-1"]}, schema={"id": pl.String})], how="diagonal")
    sub.write_csv(folder / "catalog.csv")
    matches.write_csv(folder / "matches.csv")
    return folder


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_help_reads_well():
    r = run("--help")
    assert r.exit_code == 0
    assert "dedupe" in r.output and "eval" in r.output


def test_dedupe_then_eval_end_to_end(abt_subset, tmp_path):
    out = tmp_path / "run"
    r = run("dedupe", abt_subset / "catalog.csv", "--out", out)
    assert r.exit_code == 0, r.output
    groups = pl.read_parquet(out / "groups.parquet")
    catalog = pl.read_csv(abt_subset / "catalog.csv", infer_schema=False)
    assert sorted(groups["id"].to_list()) == sorted(catalog["id"].to_list())  # every row exactly once
    assert groups.columns == ["id", "group_id", "group_size", "matched_to", "score", "status"]
    assert groups.filter(pl.col("id") == "empty-1")["status"].to_list() == ["empty_text"]
    pairs = pl.read_parquet(out / "pairs.parquet")
    assert {"id_a", "id_b", "score", "cos_embedding", "cos_tfidf", "code", "rank", "matched"} <= set(pairs.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == len(catalog)
    assert manifest["counts"]["empty_text_rows"] == 1
    assert manifest["model"]["name"] == "all-MiniLM-L6-v2"
    assert manifest["index"]["text"]["factory"] == "Flat"

    r = run("eval", out / "groups.parquet", "--gold", abt_subset / "matches.csv", "--sweep")
    assert r.exit_code == 0, r.output
    result = json.loads((out / "eval.json").read_text())
    assert result["metrics"]["f1"] > 0.7  # easy subset: every row has a partner
    assert result["blocking"]["recall@10"] > 0.9
    cal = json.loads((out / "calibration.json").read_text())
    assert set(cal["methods"]) == {"mutual", "average", "components"}  # every grouping method swept
    assert cal["f1"] == max(v["f1"] for v in cal["methods"].values()) and cal["f1"] >= result["metrics"]["f1"] - 1e-9
    assert cal["run_method"] == "mutual" and "-0.7 to 1.3" in cal["score_range"]
    assert "wins" in r.output
    lowest = pl.read_parquet(out / "pairs.parquet")["score"].drop_nulls().min()
    assert cal["meaning"].startswith("no threshold") == (cal["threshold"] <= lowest + 1e-4)
    # the run directory itself is accepted, and scores the same groups
    r = run("eval", out, "--gold", abt_subset / "matches.csv")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "eval.json").read_text())["metrics"]["f1"] == result["metrics"]["f1"]
    r = run("eval", out / "index", "--gold", abt_subset / "matches.csv")
    assert r.exit_code != 0 and "is a directory without groups.parquet" in " ".join(r.output.replace("│", " ").split())

    # rerun: embeddings and index come from the run directory; the calibration is read back
    r = run("dedupe", abt_subset / "catalog.csv", "--out", out, "--calibration", out / "calibration.json")
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["embeddings"]["embedded_rows"] == 0
    assert manifest["matching"]["threshold"] == cal["threshold"]
    assert (
        manifest["matching"]["threshold_on"] == "score" and manifest["matching"]["learned"]["threshold_from"] == "given"
    )


def test_default_dedupe_learns_its_settings_and_components_chaining_is_flagged(abt_subset, tmp_path):
    out = tmp_path / "run"
    r = run("dedupe", abt_subset / "catalog.csv", "--out", out)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())["matching"]
    assert m["method"] == "auto" and m["method_used"] == "mutual"  # two shops: one duplicate per row
    assert m["threshold_on"] == "match_probability" and m["learned"]["mixture"]["fitted_on_pairs"] > 0
    pairs = pl.read_parquet(out / "pairs.parquet")
    p = pairs["match_probability"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    assert json.loads((out / "manifest.json").read_text())["warnings"] == []
    # a threshold that lets look-alikes chain: components make one giant group, and say so
    r = run("dedupe", abt_subset / "catalog.csv", "--out", out, "--method", "components", "--threshold", "0.0")
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["largest_group"] > 100
    assert len(manifest["warnings"]) == 2 and "--method average or auto" in manifest["warnings"][0]
    assert "matches per row" in manifest["warnings"][1]  # the groups imply far more than the model expects
    assert "warning:" in r.output and "exceed 100 rows" in r.output
    assert manifest["groups"]["largest_groups"][0]["size"] == manifest["counts"]["largest_group"]


def test_components_method_and_no_lexical(abt_subset, tmp_path):
    out = tmp_path / "cc"
    r = run(
        "dedupe",
        abt_subset / "catalog.csv",
        "--out",
        out,
        "--method",
        "components",
        "--threshold",
        "0.9",
        "--no-lexical",
    )
    assert r.exit_code == 0, r.output
    pairs = pl.read_parquet(out / "pairs.parquet")
    assert "cos_tfidf" not in pairs.columns
    assert pairs.filter(pl.col("matched"))["score"].min() >= 0.9


@pytest.mark.parametrize(
    ("content", "name", "args", "message"),
    [
        (None, "missing.csv", [], "missing.csv: catalog file not found"),
        ("id,title\n1,a\n", "cat.xlsx", [], "unknown catalog format '.xlsx'"),
        ("sku,title\n1,a\n", "cat.csv", [], "no id column 'id'"),
        ("id,title\n1,a\n", "cat.csv", ["--text-cols", "name"], "no text column 'name'"),
        ("id,title\n1,a\n1,b\n", "cat.csv", [], "repeated id; e.g. '1' is in rows 1, 2"),
        ("id,title\n1,a\n", "cat.csv", ["--model", "no-such-model"], "unknown model spec 'no-such-model'"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, content, name, args, message):
    """In process, as the console script runs (tests/test_faults.py keeps a subprocess case)."""
    from conftest import run_main

    f = tmp_path / name
    if content is not None:
        f.write_text(content)
    code, said = run_main("dedupe", f, "--out", tmp_path / "o", *args)
    assert code == 2 and message in said and "Traceback" not in said


def test_choices_are_validated_by_the_command_line(tmp_path):
    """A choice option (a Literal) is refused by Typer before any work, naming the choices."""
    from eclip.cli import app

    (tmp_path / "cat.csv").write_text("id,title\n1,a\n")
    args = ["dedupe", str(tmp_path / "cat.csv"), "--out", str(tmp_path / "o"), "--method", "louvain"]
    r = CliRunner().invoke(app, args)
    said = " ".join(r.output.replace("│", " ").split())  # the error box, unwrapped
    assert r.exit_code == 2 and "'louvain' is not one of 'auto', 'mutual', 'average', 'components'" in said
    assert not (tmp_path / "o").exists()


def test_eval_rejects_unknown_gold_ids(abt_subset, tmp_path):
    out = tmp_path / "g"
    out.mkdir()
    pl.DataFrame({"id": ["x", "y"], "group_id": [0, 1]}).write_parquet(out / "groups.parquet")
    (tmp_path / "gold.csv").write_text("id_a,id_b\nx,q\n")
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from eclip.cli import main; main()",
            "eval",
            str(out / "groups.parquet"),
            "--gold",
            str(tmp_path / "gold.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "not in the predictions" in proc.stderr


def test_eval_says_when_pairwise_and_bcubed_disagree(abt_subset, tmp_path):
    catalog = pl.read_csv(abt_subset / "catalog.csv", infer_schema=False)
    singletons = tmp_path / "groups.parquet"  # a run that matched nothing
    pl.DataFrame({"id": catalog["id"], "group_id": range(len(catalog))}).write_parquet(singletons)
    r = runner.invoke(app, ["eval", str(singletons), "--gold", str(abt_subset / "matches.csv")], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "note: pairwise F1 0.0000 and B-cubed F1" in r.output and "disagree" in r.output


@pytest.mark.slow  # a whole dedupe in a subprocess: run by .ci/run after the main suite
def test_a_redirected_run_logs_plain_progress_lines(abt_subset, tmp_path):
    import os
    import subprocess
    import sys

    log = tmp_path / "log.txt"
    env = {**os.environ, "ECLIP_PROGRESS_INTERVAL": "0", "HF_HUB_OFFLINE": "1"}
    with log.open("w") as fh:
        rc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from eclip.cli import main; main()",
                "dedupe",
                str(abt_subset / "catalog.csv"),
                "--out",
                str(tmp_path / "run"),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=600,
        ).returncode
    text = log.read_text()
    assert rc == 0, text
    assert "\r" not in text  # no progress-bar frames in a log
    lines = text.splitlines()
    assert any(line.startswith("embedding ") and ": started 0/" in line for line in lines)
    assert any(": done " in line and "rows/s" in line for line in lines)
    assert sum(": at " in line for line in lines) >= 2  # a line per update while the step runs


def test_a_brand_column_that_is_not_there_is_named(abt_subset, tmp_path):
    from eclip.errors import EclipError

    r = run("dedupe", abt_subset / "catalog.csv", "--out", tmp_path / "run", "--brand-col", "marque")
    assert isinstance(r.exception, EclipError)  # main() prints it as one red line, exit 2
    assert "catalog.csv: no brand column 'marque'" in str(r.exception) and "--brand-col" in str(r.exception)


def test_ray_address_is_optional_on_the_command_line():
    from eclip.cli.options import optional_ray_address

    assert optional_ray_address(["dedupe", "c.csv", "--ray"]) == ["dedupe", "c.csv", "--ray", "local"]
    assert optional_ray_address(["embed", "--ray", "c.csv", "--out", "o"]) == [
        "embed",
        "--ray",
        "local",
        "c.csv",
        "--out",
        "o",
    ]
    assert optional_ray_address(["embed", "--ray", "--ray-workers", "2"]) == [
        "embed",
        "--ray",
        "local",
        "--ray-workers",
        "2",
    ]
    assert optional_ray_address(["embed", "--ray", "auto"]) == ["embed", "--ray", "auto"]
    assert optional_ray_address(["embed", "--ray", "10.0.0.5:6379", "c.csv"]) == [
        "embed",
        "--ray",
        "10.0.0.5:6379",
        "c.csv",
    ]


def test_version_option(capsys):
    from importlib.metadata import version

    from eclip.cli.app import app
    from eclip.progress import console

    with console.capture() as cap:
        result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and f"eclip {version('eclip')}" in cap.get() + result.output


def test_jobs_without_out_get_a_directory_named_after_the_catalog(tmp_path):
    from eclip.cli.options import default_out

    a = default_out("embeddings", tmp_path / "abt_buy" / "catalog.csv")
    b = default_out("embeddings", tmp_path / "fashion" / "catalog.csv")
    assert a == Path("runs/embeddings/abt_buy-catalog") and b != a  # two catalogs never share one
    assert default_out("train", tmp_path / "x" / "dump.csv.gz") == Path("runs/train/x-dump")


def test_one_list_convention_repeat_or_commas(tmp_path):
    """Name lists (columns, signals) take a repeated option, commas, or both."""
    from eclip.cli import app
    from eclip.cli.options import split_cols

    assert split_cols(["title, brand", "colour"]) == split_cols("title,brand,colour") == ["title", "brand", "colour"]
    assert split_cols(None) is None and split_cols([" , "]) is None
    cat = tmp_path / "cat.csv"
    pl.DataFrame(
        {
            "id": ["1", "2", "3"],
            "title": ["red shoe", "blue hat", "red shoe"],
            "brand": ["a", "b", "a"],
            "colour": ["r", "b", "r"],
        }
    ).write_csv(cat)
    r = CliRunner().invoke(
        app,
        [
            "embed",
            str(cat),
            "--out",
            str(tmp_path / "e"),
            "--model",
            "minilm-static",
            "--text-cols",
            "title,brand",
            "--text-cols",
            "colour",
        ],
    )
    assert r.exit_code == 0, r.output
    made = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert made["settings"]["text_cols"] == ["title", "brand", "colour"]
