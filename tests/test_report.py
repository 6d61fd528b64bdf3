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
from eclip.report import plots
from eclip.report.entries import ReportContent
from eclip.report.html import _json_for_script, _plots
from eclip.report.order import ORDERS, order_frame, threshold_axis

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


def _report_data(html: str) -> dict:
    return json.loads(html.split('id="report-data">', 1)[1].split("</script>", 1)[0])


def _path_x(tags: list[tuple[str, dict]], gid: str) -> list[float]:
    """The x coordinates of the first ``<path>`` inside ``<g id=gid>`` (matplotlib's SVG)."""
    at = next(i for i, (t, a) in enumerate(tags) if t == "g" and a.get("id") == gid)
    d = next(a["d"] for t, a in tags[at:] if t == "path")
    nums = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return nums[0::2]


def _threshold_at(tags: list[tuple[str, dict]]) -> float:
    """Where the threshold line of the precision/recall plot lies across its plotting area
    (0: left edge, 1: right edge)."""
    box = _path_x(tags, "pr-axes")
    line = _path_x(tags, "threshold-line")
    return (line[0] - min(box)) / (max(box) - min(box))


def _tags(markup: str) -> list[tuple[str, dict]]:
    dom = _Dom()
    dom.feed(markup)
    return dom.tags


def test_threshold_axis_follows_the_manifest():
    prob = np.array([0.1, np.nan, 0.9], dtype=np.float32)
    on_prob = {"matching": {"threshold_on": "match_probability", "threshold": 0.5}}
    assert threshold_axis(on_prob, prob) == "match_probability"
    assert threshold_axis(on_prob, pl.Series([None, 0.7])) == "match_probability"
    assert threshold_axis(on_prob, np.full(3, np.nan)) == "score"  # no probabilities to draw
    assert threshold_axis(on_prob, None) == "score"
    assert threshold_axis({"matching": {"threshold_on": "score"}}, prob) == "score"
    assert threshold_axis({}, prob) == "score"  # runs from before threshold_on


def _content(axis: str, threshold: float) -> ReportContent:
    manifest = {"job": "dedupe", "matching": {"threshold": threshold, "threshold_on": axis}}
    grid = np.linspace(0.0, 1.0, 11) if axis == "match_probability" else np.linspace(-1.0, 1.3, 11)
    curve = [(float(t), 0.5 + 0.04 * i, 1.0 - 0.08 * i, 0.6) for i, t in enumerate(grid)]
    scores = np.linspace(-1.0, 1.3, 50)
    return ReportContent("dedupe", manifest, [], {}, scores, scores > 0.8, np.array([1, 1, 2, 2, 3]), curve, axis=axis)


def test_threshold_is_drawn_on_the_axis_it_applies_to():
    figs = _plots(_content("match_probability", 0.5))
    pr = next(f for f in figs if f["kind"] == "pr")
    assert (pr["axis"], pr["threshold"]) == ("match_probability", "0.5")
    assert "match probability" in pr["caption"]
    assert _threshold_at(_tags(pr["svg"])) == pytest.approx(0.5, abs=0.01)  # 0.5 on a 0-1 axis: the middle
    scores = next(f for f in figs if f["kind"] == "scores")
    assert not any(a.get("id") == "threshold-line" for _, a in _tags(scores["svg"]))  # not on the score axis
    # a threshold on the score: drawn where 0.5 lies on the -1 .. 1.3 score axis, not in the middle
    pr = next(f for f in _plots(_content("score", 0.5)) if f["kind"] == "pr")
    assert pr["axis"] == "score"
    assert _threshold_at(_tags(pr["svg"])) == pytest.approx(1.5 / 2.3, abs=0.03)


def _tick_labels(fig, axis: str) -> list[str]:
    fig.canvas.draw()
    ax = fig.axes[0]
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    return [t.get_text() for t in ticks if t.get_text() and lo <= t.get_position()[0 if axis == "x" else 1] <= hi]


def test_size_histogram_scales_fit_the_data():
    import matplotlib.pyplot as plt

    # Abt-Buy: 391 singletons, 885 pairs: linear integer sizes and counts, one bar per size
    abt = np.array([1] * 391 + [2] * 885)
    edges, counts, xscale, yscale = plots.size_bins(abt)
    assert (xscale, yscale) == ("linear", "linear")
    assert edges.tolist() == [0.5, 1.5, 2.5] and counts.tolist() == [391, 885]
    fig = plots.size_figure(abt, "sizes")
    assert _tick_labels(fig, "x") == ["1", "2"]
    assert fig.axes[0].get_yscale() == "linear"
    assert all(t.isdigit() for t in _tick_labels(fig, "y"))
    plt.close(fig)
    # sizes 1-3 with counts across orders of magnitude: linear sizes, log counts, plain labels
    few = np.array([1] * 5000 + [2] * 40 + [3] * 3)
    assert plots.size_bins(few)[2:] == ("linear", "log")
    fig = plots.size_figure(few, "sizes")
    assert _tick_labels(fig, "x") == ["1", "2", "3"]
    assert set(_tick_labels(fig, "y")) <= {"1", "10", "100", "1,000", "10,000"} and "1,000" in _tick_labels(fig, "y")
    plt.close(fig)
    # sizes spanning orders of magnitude: log sizes, labelled 1, 10, 100
    wide = np.array([1] * 3000 + [2] * 300 + [5] * 30 + [40] * 3 + [400])
    assert plots.size_bins(wide)[2:] == ("log", "log")
    fig = plots.size_figure(wide, "sizes")
    labels = _tick_labels(fig, "x")
    assert labels == ["1", "10", "100"]
    assert not any("\\times" in t or "^" in t or "×" in t for t in labels + _tick_labels(fig, "y"))
    plt.close(fig)
    assert plots.size_bins(np.zeros(0, np.int64))[1].sum() == 0  # no groups: an empty plot, no error


def test_order_frame_puts_the_weakest_link_first():
    frame = pl.DataFrame({"gid": [0, 1, 2, 3, 4], "size": [2, 5, 2, 3, 2], "certainty": [0.9, 0.6, None, 0.6, 0.51]})
    assert order_frame(frame, "least-certain")["gid"].to_list() == [4, 1, 3, 0, 2]  # no link measured: last
    assert order_frame(frame, "most-certain")["gid"].to_list() == [2, 0, 1, 3, 4]
    assert order_frame(frame, "largest")["gid"].to_list() == [1, 3, 4, 0, 2]
    assert ORDERS[0] == "least-certain"
    with pytest.raises(ValueError, match="least-certain"):
        order_frame(frame, "best")


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


@pytest.fixture(scope="module")
def abt_run(tmp_path_factory):
    """A default dedupe run (threshold learned on the match probability) of the Abt-Buy rows in
    200 gold matches, plus 100 other rows, reported against that gold."""
    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    folder = tmp_path_factory.mktemp("abt")
    matches = pl.read_csv(SHARED / "abt_buy" / "matches.csv", infer_schema=False).head(200)
    catalog = pl.read_csv(SHARED / "abt_buy" / "catalog.csv", infer_schema=False)
    keep = set(matches["id_a"]) | set(matches["id_b"])
    sub = pl.concat(
        [catalog.filter(pl.col("id").is_in(list(keep))), catalog.filter(~pl.col("id").is_in(list(keep))).head(100)]
    )
    sub.write_csv(folder / "catalog.csv")
    matches.write_csv(folder / "matches.csv")
    out = folder / "run"
    r = runner.invoke(app, ["dedupe", str(folder / "catalog.csv"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "manifest.json").read_text())["matching"]["threshold_on"] == "match_probability"
    r = runner.invoke(app, ["report", str(out), "--gold", str(folder / "matches.csv")])
    assert r.exit_code == 0, r.output
    return out


def _weakest_links(run) -> dict[int, float]:
    """Each match group's weakest accepted link (lowest match probability), from the run's
    own files rather than the report's."""
    groups = pl.read_parquet(run / "groups.parquet").filter(pl.col("group_size") > 1)
    gid = dict(zip(groups["id"].to_list(), groups["group_id"].to_list()))
    weakest: dict[int, float] = {}
    pairs = pl.read_parquet(run / "pairs.parquet").filter(pl.col("matched"))
    for a, b, p in pairs.select("id_a", "id_b", "match_probability").iter_rows():
        if a in gid and gid[a] == gid.get(b):
            weakest[gid[a]] = min(weakest.get(gid[a], 2.0), p)
    return weakest


def test_dedupe_report_lists_the_least_certain_groups_first(abt_run):
    weakest = _weakest_links(abt_run)
    assert len(weakest) > 20 and len(set(weakest.values())) > 5
    html = (abt_run / "report.html").read_text()
    data = _report_data(html)
    shown = [g["gid"] for g in data["groups"]]
    assert sorted(shown) == sorted(weakest)
    values = [round(weakest[g], 4) for g in shown]  # the page shows and sorts 4 decimals
    assert values == sorted(values)  # weakest link ascending: the least certain group first
    assert data["groups"][0]["certainty"] == pytest.approx(min(weakest.values()), abs=1e-4)
    assert data["order"] == "least-certain" and '<option value="least-certain" selected>' in html
    assert 'data-plot="pr" data-x-axis="match_probability" data-threshold="0.5"' in html
    review = pl.read_csv(abt_run / "review.csv", infer_schema=False)
    assert review["group_id"].cast(pl.Int64).unique(maintain_order=True).to_list() == shown  # same order
    for order, expect in (
        ("most-certain", sorted(weakest, key=lambda g: (-weakest[g], g))),
        ("largest", sorted(weakest, key=lambda g: (weakest[g], g))),  # mutual pairs: all of size 2
    ):
        r = runner.invoke(app, ["report", str(abt_run), "--order", order, "--out", str(abt_run / f"{order}.html")])
        assert r.exit_code == 0, r.output
        got = [g["gid"] for g in _report_data((abt_run / f"{order}.html").read_text())["groups"]]
        assert [round(weakest[g], 4) for g in got] == [round(weakest[g], 4) for g in expect], order
    r = runner.invoke(app, ["report", str(abt_run), "--order", "best"])
    assert r.exit_code == 2 and "least-certain" in r.output
    runner.invoke(app, ["report", str(abt_run), "--gold", str(abt_run.parent / "matches.csv")])  # back to default


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


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--window-size=1280,1600",
    "--virtual-time-budget=5000",
)


def _chromium_dom(report) -> _Dom:
    """The report's DOM after its script ran in headless Chromium."""
    url = report.resolve().as_uri()
    dom = subprocess.run([_chromium(), *CHROMIUM_FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _Dom()
    parser.feed(dom.stdout)
    return parser


@pytest.mark.slow  # Chromium: run by .ci/run after the main suite
def test_report_renders_in_headless_chromium(cluster_run, tmp_path):
    parser = _chromium_dom(cluster_run / "report.html")
    url = (cluster_run / "report.html").resolve().as_uri()
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
    r = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # Chromium
def test_dedupe_report_in_chromium_opens_on_the_least_certain_group_and_draws_the_threshold_on_probability(
    abt_run, tmp_path
):
    weakest = _weakest_links(abt_run)
    parser = _chromium_dom(abt_run / "report.html")
    tags = parser.tags
    cards = [int(a["data-group-id"]) for t, a in tags if t == "section" and "group" in (a.get("class") or "").split()]
    assert len(cards) == min(50, len(weakest))  # one page drawn
    assert weakest[cards[0]] == pytest.approx(min(weakest.values()), abs=1e-4)  # the weakest link of all first
    shown = [round(weakest[g], 4) for g in cards]
    assert shown == sorted(shown)
    text = " ".join(parser.text)
    assert "weakest link: match probability" in text
    assert "0.5 on match probability" in text  # the facts name the threshold's axis
    pr = next(a for t, a in tags if t == "figure" and a.get("data-plot") == "pr")
    assert pr["data-x-axis"] == "match_probability" and pr["data-threshold"] == "0.5"
    assert "this run's threshold, 0.5 on the match probability" in text
    assert _threshold_at(tags) == pytest.approx(0.5, abs=0.01)  # 0.5 on the 0-1 probability axis
    select = next(i for i, (t, a) in enumerate(tags) if t == "select" and a.get("id") == "order")
    assert "selected" in tags[select + 1][1] and tags[select + 1][1]["value"] == "least-certain"
    # the page's order menu: choosing "most certain first" re-sorts the gallery
    pick = '<script>var s = document.getElementById("order"); s.value = "most-certain"; s.dispatchEvent(new Event("change"));</script>'
    html = (abt_run / "report.html").read_text().replace("</body>", pick + "</body>")
    (tmp_path / "picked.html").write_text(html)
    tags = _chromium_dom(tmp_path / "picked.html").tags
    cards = [int(a["data-group-id"]) for t, a in tags if t == "section" and "group" in (a.get("class") or "").split()]
    assert weakest[cards[0]] == pytest.approx(max(weakest.values()), abs=1e-4)
    shown = [round(weakest[g], 4) for g in cards]
    assert shown == sorted(shown, reverse=True)
