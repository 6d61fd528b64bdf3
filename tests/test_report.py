"""Reports (HTML + review CSV), review constraints in dedupe, and the report in headless Chromium."""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import polars as pl
import pytest
from conftest import SHARED
from typer.testing import CliRunner

from eclip.cli import app
from eclip.errors import CatalogError
from eclip.matcher import group, read_review
from eclip.matcher.constraints import Constraints
from eclip.report.html import _json_for_script

runner = CliRunner()
INJECTION = '<script>alert(1)</script> "><img src=x onerror=alert(2)>'


def _c(must=(), cannot=()):
    arr = lambda p, k: np.array([x[k] for x in p], dtype=np.int64)  # noqa: E731
    return Constraints(arr(must, 0), arr(must, 1), arr(cannot, 0), arr(cannot, 1))


def test_cannot_link_cuts_a_chain_at_its_weakest_edge_and_must_link_joins():
    a, b = np.array([0, 1, 3]), np.array([1, 2, 4])
    score = np.array([0.9, 0.8, 0.2], dtype=np.float32)
    free = group(6, a, b, score, 0.5, "components")
    assert free.labels[0] == free.labels[2]
    g = group(6, a, b, score, 0.5, "components", _c(must=[(3, 4), (4, 5)], cannot=[(0, 2)]))
    assert g.labels[0] == g.labels[1] != g.labels[2]  # 1-2 (0.8) is the edge dropped, not 0-1 (0.9)
    assert list(g.accepted) == [True, False, False]
    assert g.labels[3] == g.labels[4] == g.labels[5] == 3  # joined by must-link alone, below threshold


def test_read_review_builds_constraints_and_names_bad_cells(tmp_path):
    ids = ["a", "b", "c", "d"]
    p = tmp_path / "review.csv"
    p.write_text("group_id,id,decision,title\n1,a,same,x\n1,b,Same,y\n1,c,different,z\n2,d,,w\n")
    c = read_review(p, ids)
    assert [(int(x), int(y)) for x, y in zip(c.must_a, c.must_b)] == [(0, 1)]
    assert sorted((int(x), int(y)) for x, y in zip(c.cannot_a, c.cannot_b)) == [(2, 0), (2, 1)]
    p.write_text("group_id,id,decision\n1,a,same\n1,b,maybe\n")
    with pytest.raises(CatalogError, match=r"row 2, column decision: 'maybe'"):
        read_review(p, ids)
    p.write_text("group_id,id,decision\n1,zz,same\n")
    with pytest.raises(CatalogError, match=r"row 1, column id: 'zz'"):
        read_review(p, ids)
    p.write_text("group_id,id\n1,a\n")
    with pytest.raises(CatalogError, match="missing column"):
        read_review(p, ids)


def test_json_block_cannot_close_its_script():
    text = _json_for_script({"t": INJECTION + " </script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["t"].startswith("<script>")


@pytest.fixture(scope="module")
def cluster_run(fashion_subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cluster"
    r = runner.invoke(
        app,
        [
            "cluster",
            str(fashion_subset / "catalog.csv"),
            "--out",
            str(out),
            "--image-col",
            "image",
            "--image-root",
            str(SHARED / "fashion"),
            "--vectors",
            "text",
            "--gold-col",
            "articleType",
            "--min-cluster-size",
            "5",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_cluster_report_is_self_contained_escaped_and_has_a_review_file(cluster_run):
    html = (cluster_run / "report.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html  # the injected title never appears as markup
    assert not re.search(
        r"""(src|href|action)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""", html
    )  # nothing fetched
    assert "default-src 'none'" in html  # and the CSP forbids it anyway
    assert html.count("data:image/jpeg;base64,") > 50  # thumbnails embedded
    assert html.count("<svg") >= 3  # probability and size histograms, B-cubed curve (labelled run)
    data = json.loads(html.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    manifest = json.loads((cluster_run / "manifest.json").read_text())
    assert len(data["groups"]) == manifest["counts"]["clusters"]
    review = pl.read_csv(cluster_run / "review.csv", infer_schema=False)
    assert review.columns == ["group_id", "id", "decision", "title"]
    assert review.height == manifest["counts"]["clustered_rows"]


def test_dedupe_report_shows_linking_signals_and_review_changes_groups(fashion_subset, tmp_path):
    out = tmp_path / "dd"
    args = [
        "dedupe",
        str(fashion_subset / "catalog.csv"),
        "--out",
        str(out),
        "--image-col",
        "image",
        "--image-root",
        str(SHARED / "fashion"),
        "--method",
        "components",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["report", str(out), "--gold", str(fashion_subset / "catalog.csv"), "--gold-col", "articleType"]
    )
    assert r.exit_code == 0, r.output
    html = (out / "report.html").read_text()
    data = json.loads(html.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    edges = [e for g in data["groups"] for e in g["edges"]]
    assert edges and all(e[3] in {"text", "phash", "text+phash"} for e in edges)
    assert html.count("<svg") == 3  # score histogram, size histogram, PR vs threshold
    review = pl.read_csv(out / "review.csv", infer_schema=False)
    big = review.group_by("group_id").len().sort("len", descending=True)["group_id"][0]
    rows = review.filter(pl.col("group_id") == big)["id"].to_list()
    review = review.with_columns(
        pl.when(pl.col("id") == rows[0]).then(pl.lit("different")).otherwise(pl.lit("same")).alias("decision")
    )
    review.write_csv(tmp_path / "filled.csv")
    r = runner.invoke(
        app,
        [
            *args[:3],
            str(tmp_path / "dd2"),
            *args[4:],
            "--embeddings",
            str(out / "embeddings"),
            "--review",
            str(tmp_path / "filled.csv"),
        ],
    )
    assert r.exit_code == 0, r.output
    groups = pl.read_parquet(tmp_path / "dd2" / "groups.parquet")
    gid = dict(zip(groups["id"].to_list(), groups["group_id"].to_list()))
    assert all(gid[x] != gid[rows[0]] for x in rows[1:])  # split out
    assert len({gid[x] for x in rows[1:]}) == 1  # the rest stay together
    m = json.loads((tmp_path / "dd2" / "manifest.json").read_text())
    assert m["matching"]["review"]["cannot_link_pairs"] == len(rows) - 1


def test_report_of_a_non_run_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["report", str(tmp_path)])
    from eclip.errors import RunDirError

    assert isinstance(r.exception, RunDirError) and "not a dedupe or cluster run" in str(r.exception)


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("ECLIP_REQUIRE_CHROMIUM") == "1":
        pytest.fail("chromium is required (ECLIP_REQUIRE_CHROMIUM=1) but not installed; .ci/run installs it")
    pytest.skip("chromium not installed (Debian package `chromium`)")


@pytest.mark.slow  # Chromium: run by .ci/run after the main suite
def test_report_renders_in_headless_chromium(cluster_run, tmp_path):
    exe = _chromium()
    url = (cluster_run / "report.html").resolve().as_uri()
    flags = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1280,1600",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _Dom()
    parser.feed(dom.stdout)
    tags = parser.tags
    groups = [a for t, a in tags if t == "section" and "group" in (a.get("class") or "").split()]
    manifest = json.loads((cluster_run / "manifest.json").read_text())
    assert len(groups) == min(50, manifest["counts"]["clusters"])  # the gallery drew one page
    assert sum(1 for t, _ in tags if t == "svg") >= 3  # the plots
    thumbs = [a for t, a in tags if t == "img"]
    assert thumbs and all(a["src"].startswith("data:image/jpeg;base64,") for a in thumbs)
    assert not any("onerror" in a for _, a in tags)  # the injected attribute never became markup
    assert sum(1 for t, _ in tags if t == "script") == 2  # ours: the JSON block and the renderer
    text = "".join(parser.text)
    assert "page 1 of" in text
    if (
        manifest["counts"]["clusters"] <= 50
        and (
            pl.read_parquet(cluster_run / "clusters.parquet").filter(pl.col("id") == "x-script")["cluster_id"] >= 0
        ).all()
    ):
        assert INJECTION in text  # shown as text, characters intact
    shot = tmp_path / "report.png"
    r = subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
