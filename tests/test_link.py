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


def test_near_equal_links_go_to_the_pair_more_signals_agree_on():
    from eclip.jobs.link import _assign
    from eclip.jobs.link_stages import agreement
    from eclip.matcher import ModalityThresholds

    # LEFT 0 has two RIGHT twins by title (text 1.0 both, probabilities saturated alike);
    # only RIGHT 1 has the same photo. LEFT 1 is an unrelated row with one weak candidate.
    signals = {
        "text_score": np.array([1.0, 1.0, 0.2], np.float32),
        "cos_image": np.array([0.55, 1.0, np.nan], np.float32),
        "phash_distance": np.array([30, 0, np.nan], np.float32),
    }
    t = ModalityThresholds()
    tie = agreement(signals, t)
    assert tie[1] > tie[0] > tie[2]
    l, r = np.array([0, 0, 1]), np.array([0, 1, 1])
    prob = np.array([0.99999, 0.99998, 0.1])
    accepted, _ = _assign("one-to-one", 2, 2, l, r, prob, 0.5, tie)
    assert accepted.tolist() == [False, True, False]
    accepted, _ = _assign("one-to-one", 2, 2, l, r, prob, 0.5, np.zeros(3, np.float32))
    assert accepted.tolist() == [True, False, False]  # without it, the 1e-5 difference decides


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


# ---------------------------------------------------------------- per-side files and images (issue 36)


def _abt_buy_sides(folder, pairs: int):
    """Abt rows of ``pairs`` gold matches (plus every Abt row with a non-ASCII character) as a
    ``;``-separated cp1252 file, their Buy partners as a UTF-8 CSV, and the gold pairs."""
    from conftest import SHARED

    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    matches = pl.read_csv(SHARED / "abt_buy" / "matches.csv", infer_schema=False).head(pairs)
    catalog = pl.read_csv(SHARED / "abt_buy" / "catalog.csv", infer_schema=False)
    non_ascii = pl.any_horizontal(pl.col("name", "description").str.contains(r"[^\x00-\x7f]"))
    abt = catalog.filter(
        pl.col("id").is_in(matches["id_a"].to_list()) | (non_ascii & (pl.col("id").str.len_chars() < 7))
    )
    assert abt.filter(non_ascii).height >= 5  # the cp1252 bytes are really there
    (folder / "abt.csv").write_bytes(abt.write_csv(separator=";").encode("cp1252"))
    catalog.filter(pl.col("id").is_in(matches["id_b"].to_list())).write_csv(folder / "buy.csv")
    matches.write_csv(folder / "matches.csv")
    return folder / "abt.csv", folder / "buy.csv", folder / "matches.csv", abt


def test_link_a_semicolon_cp1252_file_to_a_utf8_csv_with_per_side_options(tmp_path):
    from conftest import run_main

    abt, buy, gold, rows = _abt_buy_sides(tmp_path, 150)
    with pytest.raises(UnicodeDecodeError):
        abt.read_text(encoding="utf-8")
    fast = ("--model", "minilm-static")
    # both files read as ',' -separated: LEFT's file is refused, named, in one line
    code, said = run_main("link", abt, buy, "--out", tmp_path / "bad", "--sep", ",", *fast)
    assert code == 2 and str(abt) in said and "header has 1" in said, said
    for flag, value, message in (
        ("--left-sep", ";;", "not one character"),
        ("--left-encoding", "x", "unknown encoding"),
    ):
        r = run("link", abt, buy, "--out", tmp_path / "bad", flag, value, *fast)
        said = " ".join(r.output.replace("│", " ").split())
        assert r.exit_code == 2 and "Invalid value for" in said and flag in said and message in said, said
    # the per-side options override the shared --sep
    out = tmp_path / "run"
    code, said = run_main(
        "link", abt, buy, "--out", out, "--sep", ",", "--left-sep", ";", "--left-encoding", "cp1252", *fast
    )
    assert code == 0, said
    m = json.loads((out / "manifest.json").read_text())
    assert m["inputs"]["left"]["dialect"] == {"format": "csv", "sep": ";", "encoding": "cp1252", "detected": False}
    assert m["inputs"]["right"]["dialect"]["sep"] == "," and m["inputs"]["right"]["dialect"]["encoding"] == "utf-8"
    assert m["matching"]["signals"] == ["text"]
    unmatched = pl.read_parquet(out / "unmatched_left.parquet")
    titles = dict(zip(unmatched["id"], unmatched["title"])) | {
        i: t for i, t in zip(rows["id"], rows["name"]) if i not in set(unmatched["id"])
    }
    accented = rows.filter(pl.col("name").str.contains(r"[^\x00-\x7f]"))
    for i, name in zip(accented["id"], accented["name"]):
        assert name in titles[i]  # decoded as cp1252, not mangled
    code, said = run_main("eval", out, "--gold", gold)
    assert code == 0, said
    result = json.loads((out / "eval.json").read_text())
    assert result["metrics"]["precision"] > 0.9 and result["metrics"]["f1"] > 0.8, result["metrics"]


def test_the_report_of_a_link_reads_each_file_as_the_run_was_told(tmp_path):
    """A cp1251 file (sniffing would read it as cp1252: mojibake) linked with
    --left-encoding cp1251: the report reads it back the same way, so its titles are whole."""
    from conftest import run_main

    titles = [
        "Смартфон Samsung Galaxy S21 128 ГБ черный",
        "Ноутбук Lenovo IdeaPad 5 16 ГБ серебристый",
        "Наушники Sony WH-1000XM4 беспроводные",
        "Чайник электрический Bosch TWK 3A011",
        "Пылесос Dyson V11 Absolute синий",
        "Кофемашина DeLonghi Magnifica S ECAM 22.110",
    ]
    left = pl.DataFrame({"id": [f"L{i}" for i in range(len(titles))], "title": titles})
    (tmp_path / "left.csv").write_bytes(left.write_csv(separator=";").encode("cp1251"))
    right = pl.DataFrame({"id": [f"R{i}" for i in range(len(titles))], "title": titles})
    right.write_csv(tmp_path / "right.csv")
    out = tmp_path / "run"
    code, said = run_main(
        "link", tmp_path / "left.csv", tmp_path / "right.csv", "--out", out,
        "--left-encoding", "cp1251", "--model", "minilm-static",
    )  # fmt: skip
    assert code == 0, said
    assert pl.read_parquet(out / "links.parquet").height == len(titles)
    code, said = run_main("report", out)
    assert code == 0, said
    page = (out / "report.html").read_text(encoding="utf-8")
    for t in titles:  # on LEFT's side of its link and on RIGHT's, never as cp1252's mojibake
        assert page.count(t) >= 2 and t.encode("cp1251").decode("cp1252", errors="replace") not in page, t


def _fashion_sides(folder, same_photo: int = 12, others: int = 60):
    """Two halves of the fashion catalog: ``same_photo`` pairs of listings whose photos are
    byte-identical, one listing on each side, plus ``others`` further rows split in two."""
    import hashlib

    from conftest import SHARED

    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    root = SHARED / "fashion"
    cat = pl.read_csv(root / "catalog.csv", infer_schema=False)
    digest = [hashlib.md5((root / p).read_bytes()).hexdigest() for p in cat["image"]]
    cat = cat.with_columns(pl.Series("md5", digest))
    twins = cat.filter(pl.col("md5").is_duplicated()).sort("md5", "id")
    first = twins.group_by("md5", maintain_order=True).head(1).select(cat.columns)
    second = twins.filter(~pl.col("id").is_in(first["id"].to_list()))
    first, second = first.head(same_photo), second.filter(pl.col("md5").is_in(first["md5"].head(same_photo).to_list()))
    rest = cat.filter(~pl.col("md5").is_in(twins["md5"].to_list())).sample(others, seed=1)
    left = pl.concat([first, rest.head(others // 2)]).drop("md5")
    right = pl.concat([second, rest.tail(others - others // 2)]).drop("md5")
    left.write_csv(folder / "left.csv")
    right.write_csv(folder / "right.csv")
    gold = first.select("md5", id_a="id").join(second.select("md5", id_b="id"), on="md5").drop("md5")
    return folder / "left.csv", folder / "right.csv", root, set(zip(gold["id_a"], gold["id_b"]))


def test_link_with_images_on_both_sides(tiny_clip_dir, tmp_path):
    left, right, root, same_photo = _fashion_sides(tmp_path)
    out = tmp_path / "run"
    args = ["link", left, right, "--out", out, "--model", tiny_clip_dir, "--left-image-col", "image"]
    args += ["--left-image-root", root, "--right-image-root", root, "--k", "5"]
    r = run(*args, "--signals", "text,image", "--signals", "phash")
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["matching"]["signals"] == ["text", "image", "phash"]
    assert m["inputs"]["right"]["image_col"] == "image" and m["inputs"]["left"]["image_root"] == str(root)
    assert set(m["index"]) == {"text", "image", "phash"}
    cand = pl.read_parquet(out / "candidates.parquet")
    assert {"text_score", "cos_image", "phash_distance"} <= set(cand.columns)
    assert not cand["source"].str.contains("text").all()  # some pairs come from the images alone
    pairs = {(a, b): row for a, b, *row in cand.select("left_id", "right_id", "cos_image", "phash_distance").rows()}
    for pair in same_photo:  # a byte-identical photo: image cosine 1, pHash distance 0
        assert pair in pairs and pairs[pair][0] > 0.999 and pairs[pair][1] == 0
    links = pl.read_parquet(out / "links.parquet")
    found = set(zip(links["left_id"], links["right_id"]))
    assert len(found & same_photo) >= 0.8 * len(same_photo), (len(found & same_photo), len(links))
    assert sum(m["counts"]["links_by_signal"].values()) >= len(found & same_photo)
    # images only: every link rests on an image signal
    r = run(*args, "--signals", "image", "--out", tmp_path / "images")
    assert r.exit_code == 0, r.output
    cand = pl.read_parquet(tmp_path / "images" / "candidates.parquet")
    assert "text_score" not in cand.columns and "cos_embedding" not in cand.columns
    assert set(cand["source"]) == {"image"}


def test_image_signals_without_images_are_one_clear_line(tiny_clip_dir, tmp_path):
    from conftest import run_main

    left, right, root, _ = _fashion_sides(tmp_path, same_photo=2, others=8)
    base = ["link", left, right, "--out", tmp_path / "o", "--threshold", "0.5"]
    code, said = run_main(*base, "--signals", "image")
    assert code == 2 and "--signals image needs images on both sides, but LEFT has no image column" in said, said
    assert "--left-image-col" in said and not (tmp_path / "o" / "embeddings").exists()  # refused before embedding
    code, said = run_main(*base, "--right-image-col", "image", "--signals", "fused", "--right-image-root", root)
    assert code == 2 and "LEFT has no image column: pass --left-image-col" in said, said
    code, said = run_main(*base, "--signals", "text,colour")
    assert code == 2 and "colour" in said and "text, image, fused, phash" in said, said
    # an image column read by a text-only model: phash works, image vectors do not exist
    sides = ["--left-image-col", "image", "--left-image-root", root, "--right-image-root", root]
    code, said = run_main(*base, *sides, "--model", "minilm-static", "--signals", "image")
    assert code == 2 and "embeds text only: pass an open_clip --model" in said, said
    code, said = run_main(*base, *sides, "--model", "minilm-static", "--signals", "text,phash")
    assert code == 0, said
