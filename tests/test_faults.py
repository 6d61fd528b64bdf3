"""Nothing lost, nothing confusing (issue 19): input sniffing on real bad files, the
run-directory lock between processes, Ctrl-C, pickled checkpoints."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eclip.catalog import load_catalog
from eclip.catalog.reader import read_table_with_dialect
from eclip.errors import CatalogError, RunDirError
from eclip.rundir import HOLDER_FILE, lock_dir, locked, unlock_dir

BAD = Path(__file__).parent / "data" / "bad"
CLI = [sys.executable, "-c", "from eclip.cli import main; main()"]


@pytest.mark.parametrize(
    "name, sep, encoding, ids, first_title",
    [
        ("semicolon.csv", ";", "utf-8", ["1", "2"], "Sony Bravia KDL40 TV"),
        ("latin1.csv", ",", "cp1252", ["SKU-É", "SKU-È"], "Café crème 250 g"),
        ("utf16.csv", ",", "utf-16", ["1", "2"], "Café crème"),
        ("bom.csv", ",", "utf-8-sig", ["1", "2"], "Café crème"),
        ("pipe.txt", "|", "utf-8", ["1", "2"], "Sony TV"),
    ],
)
def test_catalogs_are_sniffed(name, sep, encoding, ids, first_title):
    cat = load_catalog(BAD / name)
    assert cat.dialect.sep == sep and cat.dialect.encoding == encoding and cat.dialect.detected
    assert cat.ids == ids  # latin-1 ids kept as they are, not folded to SKU-\ufffd (issue 23, case 2)
    assert cat.texts[0] == first_title


def test_sep_and_encoding_override_sniffing():
    df, dialect = read_table_with_dialect(BAD / "semicolon.csv", sep=",")
    assert df.columns == ["id;name;price"] and not dialect.detected  # told, not sniffed
    with pytest.raises(CatalogError, match="does not decode as utf-8"):
        read_table_with_dialect(BAD / "latin1.csv", encoding="utf-8")
    with pytest.raises(CatalogError, match="unknown encoding 'klingon'"):
        read_table_with_dialect(BAD / "latin1.csv", encoding="klingon")


def test_header_only_catalog_has_its_own_error(tmp_path):
    proc = subprocess.run(
        [*CLI, "dedupe", str(BAD / "header_only.csv"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "header_only.csv: no rows (a header only: id, name)" in " ".join(proc.stderr.split() + proc.stdout.split())
    assert "Traceback" not in proc.stderr and "shard" not in proc.stdout


#: The bad-input corpus: file -> the one-line error ``load_catalog`` must give for it.
CATALOG_ERRORS = {
    "empty.csv": "empty.csv: the file is empty; a catalog needs a header and at least one row.",
    "header_only.csv": "header_only.csv: no rows (a header only: id, name)",
    "ragged.csv": "ragged.csv: cannot be read as CSV: line 3 has 4 fields but the header has 3",
    "broken.jsonl": "broken.jsonl: cannot be read as JSONL: line 2 is not valid JSON: Expecting ',' delimiter (column 27)",
    "list_title.parquet": "list_title.parquet: column 'title' has type List(String), but the text column must hold text or numbers",
    "duplicate_ids.csv": "duplicate_ids.csv: column 'id' has 1 repeated id; e.g. '1' is in rows 1, 3.",
    "null_ids.csv": "null_ids.csv: column 'id' is empty in row 2. Every row needs an id.",
    "float_ids.jsonl": "float_ids.jsonl: column 'id' holds floating-point numbers (e.g. 1.0 in row 1)",
}
#: Images named by ``images.csv``: row -> (failure reason, words of its detail).
IMAGE_FAILURES = {
    "1": ("corrupt", "truncated.jpg: image file is truncated"),
    "2": ("too_large", "bomb.png: Image size (196000000 pixels) exceeds limit"),
    "3": ("outside_root", "/etc/hostname resolves to /etc/hostname, outside the catalog root"),
}


@pytest.mark.parametrize("name", sorted(CATALOG_ERRORS))
def test_bad_catalogs_get_one_line_errors(name):
    with pytest.raises(CatalogError) as info:
        load_catalog(BAD / name)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(BAD / name))
    assert CATALOG_ERRORS[name] in message


@pytest.mark.parametrize("row", sorted(IMAGE_FAILURES))
def test_bad_images_are_failures_not_crashes(row, tmp_path):
    from eclip.catalog.images import ImageFailure, ImageSettings, open_image

    cat = load_catalog(BAD / "images.csv", image_col="image")
    settings = ImageSettings(root=cat.root, cache_dir=tmp_path)
    with pytest.raises(ImageFailure) as info:
        open_image(cat.images[cat.ids.index(row)], settings)
    reason, words = IMAGE_FAILURES[row]
    assert info.value.reason == reason and words in str(info.value) and "\n" not in str(info.value)


def test_url_that_never_answers_times_out(tmp_path):
    import socket

    from eclip.catalog.images import ImageFailure, ImageSettings, open_image

    with socket.socket() as listener:  # accepts the connection and never sends a byte
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/never.jpg"
        t0 = time.time()
        with pytest.raises(ImageFailure) as info:
            open_image(
                url, ImageSettings(root=BAD, cache_dir=tmp_path, timeout_s=1.0, retries=0, allow_private_urls=True)
            )
    assert info.value.reason == "timeout" and time.time() - t0 < 10


def test_invisible_and_huge_titles():
    from eclip.catalog.schema import MAX_TEXT_CHARS
    from eclip.progress import console

    zero_width = load_catalog(BAD / "zero_width_title.csv")
    assert zero_width.texts == ["", "Kettle"] and zero_width.empty_rows == [0]  # matched as an empty title
    with console.capture() as cap:
        long = load_catalog(BAD / "long_title.csv")
    assert [len(t) for t in long.texts] == [7, MAX_TEXT_CHARS, 7] and long.texts[1].startswith("kettle kettle")
    said = " ".join(cap.get().split())
    assert "row 2 has text longer than 10,000 characters (up to 1,049,999); only the first 10,000 are used." in said


def _hold(run: Path, seconds: float) -> subprocess.Popen:
    """Another process that takes ``run``'s lock and keeps it for ``seconds``."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from eclip.rundir import lock_dir; import time; lock_dir({str(run)!r}); print('held', flush=True); time.sleep({seconds})",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_is_refused_and_a_killed_holder_releases(tmp_path):
    run = tmp_path / "run"
    holder = _hold(run, 600)
    with pytest.raises(RunDirError, match=rf"is in use by pid {holder.pid}"):
        lock_dir(run)
    # the CLI says the same in one line
    proc = subprocess.run(
        [*CLI, "dedupe", str(BAD / "semicolon.csv"), "--out", str(run)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and f"in use by pid {holder.pid}" in " ".join((proc.stdout + proc.stderr).split())
    holder.send_signal(signal.SIGKILL)  # a stale lock: its holder is gone
    holder.wait(30)
    with locked(run) as path:
        assert str(os.getpid()) in (path / HOLDER_FILE).read_text()
        lock_dir(run)  # the same process may lock again
        unlock_dir(run)
    # released: another process takes it
    proc = subprocess.run(
        [sys.executable, "-c", f"from eclip.rundir import lock_dir; lock_dir({str(run)!r}); print('ok')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip() == "ok", proc.stderr


def test_wait_option_waits_for_the_holder(tmp_path):
    run = tmp_path / "run"
    holder = _hold(run, 3)
    t0 = time.time()
    waiter = subprocess.run(
        [sys.executable, "-c", f"from eclip.rundir import lock_dir; lock_dir({str(run)!r}); print('got it')"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ECLIP_WAIT": "1"},
    )
    assert waiter.stdout.strip() == "got it" and time.time() - t0 > 1.0
    holder.wait(30)


@pytest.mark.slow  # run by .ci/run after the main suite
def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    proc = subprocess.Popen(
        [*CLI, "dedupe", str(BAD / "semicolon.csv"), "--out", str(tmp_path / "o")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "o").exists():  # the job has started
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "interrupted; rerun the same command to resume" in " ".join((out + err).split())
    assert "Traceback" not in err


@pytest.mark.slow  # run by .ci/run after the main suite
def test_pickled_checkpoint_is_one_line(tmp_path):
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    ckpt = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, ckpt)
    proc = subprocess.run(
        [*CLI, "embed", str(BAD / "semicolon.csv"), "--out", str(tmp_path / "e"), "--model", f"openclip:RN50:{ckpt}"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    flat = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2 and f"{ckpt}: holds pickled code; eclip loads only plain tensors" in flat
    assert "weights_only=False" not in flat and "pwned" not in flat


# ---------------------------------------------------------------- kill -9 at every stage, rerun


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    from conftest import abt_head

    return abt_head(tmp_path_factory, 90, "faults")


def _eclip(args, fault=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ECLIP_FAULT_AT", None)
    if fault:
        env["ECLIP_FAULT_AT"] = fault
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def _same_parquet(a: Path, b: Path) -> bool:
    import polars as pl

    return pl.read_parquet(a).equals(pl.read_parquet(b))


@pytest.mark.slow  # run by .ci/run after the main suite
def test_dedupe_killed_at_each_stage_reruns_to_the_same_output(small_catalog, tmp_path):
    base = tmp_path / "base"
    model = ["--model", "minilm-static"]  # seconds per run: the eleven runs test resuming, not embedding
    r = _eclip(["dedupe", small_catalog, *model, "--out", base])
    assert r.returncode == 0, r.stderr
    for stage in ("embed", "search", "score", "group", "write"):
        out = tmp_path / f"killed-{stage}"
        killed = _eclip(["dedupe", small_catalog, *model, "--out", out], fault=stage)
        assert killed.returncode == -signal.SIGKILL, (stage, killed.stderr[-500:])
        assert not (out / "manifest.json").exists()  # the run never claims to be finished
        again = _eclip(["dedupe", small_catalog, *model, "--out", out])
        assert again.returncode == 0, (stage, again.stderr[-500:])
        assert _same_parquet(out / "groups.parquet", base / "groups.parquet"), stage
        assert _same_parquet(out / "pairs.parquet", base / "pairs.parquet"), stage


@pytest.mark.slow  # run by .ci/run after the main suite
def test_embed_and_index_build_killed_midway_rerun_to_the_same_output(small_catalog, tmp_path):
    import numpy as np

    from eclip.encoders import load_embeddings

    base, out = tmp_path / "base", tmp_path / "killed"
    assert (
        _eclip(["embed", small_catalog, "--model", "minilm-static", "--out", base, "--shard-rows", "30"]).returncode
        == 0
    )
    killed = _eclip(
        ["embed", small_catalog, "--model", "minilm-static", "--out", out, "--shard-rows", "30"], fault="embed-shard-1"
    )
    assert killed.returncode == -signal.SIGKILL
    done = sorted(p.name for p in (out / "shards").iterdir() if p.is_dir() and p.name.isdigit())
    assert done == ["00000", "00001"]  # two of three shards were finished before the kill
    again = _eclip(["embed", small_catalog, "--model", "minilm-static", "--out", out, "--shard-rows", "30"])
    assert again.returncode == 0, again.stderr[-500:]
    manifest = __import__("json").loads((out / "manifest.json").read_text())
    assert manifest["reused_rows"] == 60 and manifest["embedded_rows"] == 30  # only the missing shard was redone
    assert np.array_equal(load_embeddings(out).text, load_embeddings(base).text)

    idx_base, idx = tmp_path / "idx-base", tmp_path / "idx"
    assert _eclip(["index", "build", base, "--out", idx_base]).returncode == 0
    killed = _eclip(["index", "build", base, "--out", idx], fault="index-trained")
    assert killed.returncode == -signal.SIGKILL
    again = _eclip(["index", "build", base, "--out", idx])
    assert again.returncode == 0, again.stderr[-500:]
    assert (idx / "index.faiss").read_bytes() == (idx_base / "index.faiss").read_bytes()


@pytest.mark.slow  # run by .ci/run after the main suite
def test_cluster_killed_at_each_stage_reruns_to_the_same_output(small_catalog, tmp_path):
    base = tmp_path / "base"
    # the static model keeps each of the nine runs to seconds (embedding is not what is tested here)
    args = ["cluster", small_catalog, "--model", "minilm-static", "--min-cluster-size", "2"]
    r = _eclip([*args, "--out", base])
    assert r.returncode == 0, r.stderr[-500:]
    for stage in ("embed", "hdbscan", "summary", "write"):
        out = tmp_path / f"killed-{stage}"
        killed = _eclip([*args, "--out", out], fault=stage)
        assert killed.returncode == -signal.SIGKILL, (stage, killed.stderr[-500:])
        assert not (out / "manifest.json").exists()
        again = _eclip([*args, "--out", out])
        assert again.returncode == 0, (stage, again.stderr[-500:])
        for name in ("clusters.parquet", "cluster_summary.parquet"):
            assert _same_parquet(out / name, base / name), (stage, name)


def test_index_query_reads_images_safely_and_names_catalog_columns(tmp_path):
    """Issue 22, items 1 and 6: --image goes through the catalog's image reader (the bomb is
    refused in one line), a text index refuses image queries, --catalog takes its columns."""
    import polars as pl
    from typer.testing import CliRunner

    from eclip.cli.app import app
    from eclip.errors import EclipError

    pl.DataFrame(
        {
            "sku": ["a1", "a2", "a3"],
            "product": ["Sony Bravia 40 inch TV", "Philips kettle 1.7 l", "Canon EOS 90D camera"],
        }
    ).write_csv(tmp_path / "c.csv")
    run = CliRunner().invoke
    r = run(
        app,
        [
            "index",
            "build",
            str(tmp_path / "c.csv"),
            "--out",
            str(tmp_path / "idx"),
            "--id-col",
            "sku",
            "--text-cols",
            "product",
        ],
    )
    assert r.exit_code == 0, r.output
    r = run(
        app,
        [
            "index",
            "query",
            str(tmp_path / "idx"),
            "--catalog",
            str(tmp_path / "c.csv"),
            "--id-col",
            "sku",
            "--text-cols",
            "product",
            "--k",
            "1",
            "--out",
            str(tmp_path / "q.csv"),
        ],
    )
    assert r.exit_code == 0, r.output
    q = pl.read_csv(tmp_path / "q.csv")
    assert q["query"].to_list() == q["id"].to_list() == ["a1", "a2", "a3"]  # each row finds itself first
    # from Python, a CatalogSource naming another model reuses the same embedded queries: the
    # index's model is the one used, so it is not part of the work folder's key
    from eclip.api import CatalogSource, index_query

    again = index_query(
        tmp_path / "idx",
        catalog=tmp_path / "c.csv",
        k=1,
        columns=CatalogSource(id_col="sku", text_cols=["product"], model="some-other-model"),
    )
    assert again["id"].to_list() == ["a1", "a2", "a3"]
    assert len(list((tmp_path / "idx" / "queries").iterdir())) == 1
    r = run(app, ["index", "query", str(tmp_path / "idx"), "--image", str(BAD / "bomb.png")])
    assert isinstance(r.exception, EclipError) and "a text model: it cannot embed --image queries" in str(r.exception)


def test_index_query_image_bomb_is_one_line(tiny_clip_dir, tmp_path):
    import polars as pl
    from PIL import Image
    from typer.testing import CliRunner

    from eclip.cli.app import app
    from eclip.errors import EclipError

    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{i}.png")
    pl.DataFrame(
        {"id": ["1", "2", "3"], "title": ["red", "green", "blue"], "image": ["0.png", "1.png", "2.png"]}
    ).write_csv(tmp_path / "c.csv")
    run = CliRunner().invoke
    r = run(
        app,
        [
            "index",
            "build",
            str(tmp_path / "c.csv"),
            "--out",
            str(tmp_path / "idx"),
            "--model",
            str(tiny_clip_dir),
            "--image-col",
            "image",
            "--vectors",
            "image",
        ],
    )
    assert r.exit_code == 0, r.output
    r = run(
        app,
        [
            "index",
            "query",
            str(tmp_path / "idx"),
            "--image",
            str(tmp_path / "1.png"),
            "--k",
            "1",
            "--out",
            str(tmp_path / "q.csv"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert pl.read_csv(tmp_path / "q.csv", infer_schema=False)["id"].to_list() == ["2"]
    r = run(app, ["index", "query", str(tmp_path / "idx"), "--image", str(BAD / "bomb.png")])
    assert isinstance(r.exception, EclipError)
    assert f"--image {BAD / 'bomb.png'}: too_large:" in str(r.exception) and "\n" not in str(r.exception)


def test_resume_from_a_pickled_checkpoint_is_one_line(tmp_path):
    """Issue 23, row 9: ``train --resume`` refuses pickled code like ``--model`` does."""
    import torch

    from eclip.errors import ModelError
    from eclip.train.loop import read_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": Evil()}, tmp_path / "step-0000010.pt")
    with pytest.raises(ModelError) as info:
        read_checkpoint(tmp_path / "step-0000010.pt")
    message = str(info.value)
    assert (
        message.startswith(f"{tmp_path / 'step-0000010.pt'}: holds pickled code")
        and "weights_only" not in message
        and "\n" not in message
    )
    torch.save({"step": torch.tensor(3)}, tmp_path / "plain.pt")
    assert int(read_checkpoint(tmp_path / "plain.pt")["step"]) == 3


def test_eval_given_a_csv_as_predictions_is_one_line(tmp_path):
    """Issue 23, row 8."""
    from eclip.errors import RunDirError
    from eclip.jobs.evaluate import evaluate

    (tmp_path / "groups.csv").write_text("id,group_id\n1,0\n2,0\n")
    with pytest.raises(RunDirError) as info:
        evaluate(tmp_path / "groups.csv", BAD / "semicolon.csv")
    message = str(info.value)
    assert (
        "groups.csv: not a Parquet groups file" in message
        and "groups.parquet that `eclip dedupe` wrote" in message
        and "\n" not in message
    )
    from typer.testing import CliRunner

    from eclip.cli.app import app
    from eclip.errors import EclipError

    r = CliRunner().invoke(app, ["eval", str(tmp_path / "groups.csv"), "--gold", str(BAD / "semicolon.csv")])
    assert (
        isinstance(r.exception, EclipError)
        and "groups.csv: not a Parquet file" in str(r.exception)
        and "groups.parquet, links.parquet" in str(r.exception)
    )


def test_classify_and_filter_adult_refuse_useless_labels_before_embedding(tmp_path, monkeypatch):
    """Issue 23, rows 10 and 11: one zero-shot label, or calibration labels without a positive,
    are refused before any embedding starts."""
    import eclip.jobs.source as source
    from eclip.errors import EclipError
    from eclip.jobs.adult import AdultFilterConfig, filter_adult
    from eclip.jobs.classify import ClassifyConfig, classify

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedding started")

    monkeypatch.setattr(source, "embeddings_dir", no_embedding)
    (tmp_path / "labels.txt").write_text("Shoes\n")
    with pytest.raises(EclipError, match=r"has one label \('Shoes'\).*--min-score"):
        classify(BAD / "semicolon.csv", tmp_path / "c", ClassifyConfig(labels=tmp_path / "labels.txt"))
    (tmp_path / "gold.csv").write_text("id,category\n1,Fitness\n2,Sexual Wellness\n")
    cfg = AdultFilterConfig(calibrate=tmp_path / "gold.csv", label_col="category", positive="NoSuchValue")
    with pytest.raises(
        EclipError,
        match=r"no row of column 'category' means adult under --positive 'NoSuchValue'; its values are 'Fitness', 'Sexual Wellness'",
    ):
        filter_adult(BAD / "semicolon.csv", tmp_path / "a", cfg)


def test_images_past_the_pixel_bound_are_refused_before_decoding(tmp_path):
    """Issue 23, row 7: between Pillow's warning and its error (89 M - 179 M pixels) Pillow
    decodes; eclip's own bound refuses earlier."""
    from PIL import Image

    from eclip.catalog.images import DEFAULT_MAX_PIXELS, ImageFailure, ImageSettings, open_image

    Image.new("1", (9_500, 9_500)).save(tmp_path / "big.png", optimize=True)  # 90 M pixels, a few KB
    settings = ImageSettings(root=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(ImageFailure) as info:
        open_image("big.png", settings)
    assert (
        info.value.reason == "too_large"
        and f"9500 x 9500 = 90,250,000 pixels; the limit is {DEFAULT_MAX_PIXELS:,}" in str(info.value)
    )
    Image.new("RGB", (64, 48)).save(tmp_path / "small.png")
    assert open_image("small.png", settings).size == (64, 48)
    with pytest.raises(ImageFailure, match="the limit is 1,000"):
        open_image("small.png", ImageSettings(root=tmp_path, cache_dir=tmp_path / "cache", max_pixels=1000))


def test_csv_files_for_people_hold_no_formula_cells(tmp_path):
    """Issue 23, row 4: review.csv (and every CSV written for people) neutralises cells that
    a spreadsheet would run as formulas; eclip reads its own files back unchanged."""
    import csv

    import polars as pl
    from typer.testing import CliRunner

    from eclip.cli.app import app
    from eclip.matcher.constraints import read_review
    from eclip.rundir import FORMULA_START

    titles = [
        '=HYPERLINK("http://evil.example","click") Sony TV 40',
        "+SUM(A1) Sony TV 40 inch",
        "@cmd kettle 1.7 l steel",
        "-2+3 kettle 1.7 l steel",
    ]
    ids = ["-5", "=1", "+7", "@x"]
    pl.DataFrame({"id": ids, "name": titles}).write_csv(tmp_path / "c.csv")
    run = CliRunner().invoke
    r = run(
        app,
        [
            "dedupe",
            str(tmp_path / "c.csv"),
            "--out",
            str(tmp_path / "run"),
            "--model",
            "minilm-static",
            "--threshold",
            "0.3",
        ],
    )
    assert r.exit_code == 0, r.output
    r = run(app, ["report", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    with open(tmp_path / "run" / "review.csv", newline="") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    assert len(cells) > 8 and not [c for c in cells if c.startswith(FORMULA_START)]
    assert "'@cmd kettle 1.7 l steel" in cells and "'+7" in cells  # kept, as text
    constraints = read_review(tmp_path / "run" / "review.csv", ids)  # the ids read back as they were
    assert len(constraints.must_a) == 0


def test_latin1_ids_round_trip_through_groups_parquet(tmp_path):
    """Issue 23, rows 1 and 2: a cp1252 catalog is read as cp1252 (recorded in the
    manifest) and its accented ids come out of dedupe byte for byte."""
    import json

    import polars as pl
    from typer.testing import CliRunner

    from eclip.cli.app import app

    r = CliRunner().invoke(
        app, ["dedupe", str(BAD / "latin1.csv"), "--out", str(tmp_path / "run"), "--model", "minilm-static"]
    )
    assert r.exit_code == 0, r.output
    groups = pl.read_parquet(tmp_path / "run" / "groups.parquet")
    assert sorted(groups["id"].to_list()) == ["SKU-È", "SKU-É"]
    dialect = json.loads((tmp_path / "run" / "manifest.json").read_text())["inputs"]["dialect"]
    assert dialect["encoding"] == "cp1252" and dialect["detected"]


def test_a_stale_or_edited_review_file_is_refused(tmp_path):
    """Issue 23, row 3: review.csv names the run it was written for; a group id this run
    does not have (a typo, a file from another run) is refused instead of merging rows."""
    import polars as pl
    from conftest import abt_head
    from typer.testing import CliRunner

    from eclip.cli.app import app
    from eclip.errors import CatalogError

    class Factory:  # abt_head wants a tmp_path_factory
        def mktemp(self, name):
            (tmp_path / name).mkdir()
            return tmp_path / name

    catalog = abt_head(Factory(), 120, "cat")
    run = CliRunner().invoke
    args = ["--model", "minilm-static"]
    assert run(app, ["dedupe", str(catalog), "--out", str(tmp_path / "run"), *args]).exit_code == 0
    assert run(app, ["report", str(tmp_path / "run")]).exit_code == 0
    review = pl.read_csv(tmp_path / "run" / "review.csv", infer_schema=False)
    assert review["run"].n_unique() == 1 and review.height >= 2

    typo = review.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("999999")).otherwise(pl.col("group_id")).alias("group_id")
    )
    typo.write_csv(tmp_path / "typo.csv")
    r = run(
        app, ["dedupe", str(catalog), "--out", str(tmp_path / "run"), *args, "--review", str(tmp_path / "typo.csv")]
    )
    assert isinstance(r.exception, CatalogError) and "typo.csv, row 1: group 999999 is not in that run" in str(
        r.exception
    )

    assert review["run_dir"].to_list()[0] == str((tmp_path / "run").resolve())
    other = review.with_columns(pl.lit("0123456789abcdef").alias("run"))  # written for another run
    other.write_csv(tmp_path / "other.csv")
    r = run(
        app, ["dedupe", str(catalog), "--out", str(tmp_path / "run"), *args, "--review", str(tmp_path / "other.csv")]
    )
    assert isinstance(r.exception, CatalogError) and "was written for run 0123456789abcdef" in str(r.exception)

    # the real file: accepted, and again after the run's groups changed (kept in reviewed/)
    filled = review.with_columns(pl.lit("same").alias("decision"))
    filled.write_csv(tmp_path / "run" / "review.csv")
    for _ in range(2):
        r = run(
            app,
            [
                "dedupe",
                str(catalog),
                "--out",
                str(tmp_path / "run"),
                *args,
                "--review",
                str(tmp_path / "run" / "review.csv"),
                "--threshold",
                "0.95",
            ],
        )
        assert r.exit_code == 0, (r.output, r.exception)
    assert len(list((tmp_path / "run" / "reviewed").glob("*.parquet"))) == 1
