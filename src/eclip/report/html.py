"""Render a run directory as one self-contained HTML file, plus a review CSV.

The page needs no network (a Content-Security-Policy forbids it): thumbnails are JPEG data
URIs, figures inline SVG, and the gallery is drawn page by page by a small inline script from
a JSON block, so a report of 10,000 groups opens fast. Catalog strings are escaped twice
over: Jinja2 autoescaping for everything in the HTML, and the JSON block escapes ``<``, ``>``
and ``&`` so that no title can close its ``<script>``; the script then inserts titles with
``textContent`` only, never as HTML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from markupsafe import Markup

from eclip.errors import InputFileError
from eclip.matcher.constraints import RUN_COLUMN, RUN_DIR_COLUMN, groups_fingerprint
from eclip.report import plots
from eclip.report.content import build_content
from eclip.report.entries import ReportContent
from eclip.report.order import AXIS_NAMES, ORDERS
from eclip.report.review import write_review
from eclip.rundir import atomic_path, refuse_overwrite

#: Columns of the review file that ``eclip dedupe --review`` reads.
REVIEW_COLUMNS = ("group_id", "id", "decision", "title")
PAGE_SIZE = 50
#: The page's order menu.
ORDER_LABELS = {
    "least-certain": "least certain first",
    "most-certain": "most certain first",
    "largest": "largest first",
}


def _json_for_script(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _catalog_name(manifest: dict[str, Any]) -> str:
    """The catalog file's name, or ``LEFT / RIGHT`` for a link run."""
    inputs = manifest.get("inputs", {})
    if manifest.get("job") == "link":
        return " / ".join(Path(str((inputs.get(s) or {}).get("catalog"))).name for s in ("left", "right"))
    return Path(str(inputs.get("catalog"))).name


def _catalogs(manifest: dict[str, Any]) -> list[Path]:
    """The catalog files a run read (one, or LEFT and RIGHT for a link run)."""
    inputs = manifest.get("inputs", {})
    found = [inputs.get("catalog"), manifest.get("catalog")]
    found += [
        (inputs.get(side) or {}).get("catalog") for side in ("left", "right") if isinstance(inputs.get(side), dict)
    ]
    return [Path(str(f)) for f in found if f]


def _facts(c: ReportContent) -> list[tuple[str, str]]:
    m = c.manifest
    counts = m.get("counts", {})
    model = m.get("model") or {}
    facts = [
        ("catalog", str(m.get("inputs", {}).get("catalog"))),
        ("model", str(model.get("name", model) if isinstance(model, dict) else model)),
        ("rows", f"{counts.get('rows', 0):,}"),
    ]
    if c.job == "link":
        mt = m.get("matching", {})
        facts = [
            (
                side,
                f"{(m.get('inputs', {}).get(side) or {}).get('catalog')} ({counts.get(side + '_rows', 0):,} "
                f"rows, {counts.get(side + '_unmatched', 0):,} unmatched)",
            )
            for side in ("left", "right")
        ]
        facts += [
            ("model", str(model.get("name", model) if isinstance(model, dict) else model)),
            ("mode / threshold", f"{mt.get('mode')} / {mt.get('threshold')} on {mt.get('threshold_on')}"),
            ("candidate pairs / links", f"{counts.get('candidate_pairs', 0):,} / {counts.get('links', 0):,}"),
        ]
    elif c.job == "dedupe":
        mt = m.get("matching", {})
        used = mt.get("method_used")
        method = f"{used} ({mt.get('method')})" if used and used != mt.get("method") else str(mt.get("method"))
        threshold = mt.get("threshold")
        threshold_text = f"{threshold:g}" if isinstance(threshold, (int, float)) else str(threshold)
        facts += [
            ("signals", ", ".join(mt.get("signals", []))),
            ("method / threshold", f"{method} / {threshold_text} on {AXIS_NAMES[c.axis]}"),
            (
                "match groups (size > 1)",
                f"{counts.get('multi_row_groups', 0):,} holding {counts.get('rows_in_multi_row_groups', 0):,} rows; largest {counts.get('largest_group', 0):,}",
            ),
            ("candidate / matched pairs", f"{counts.get('candidate_pairs', 0):,} / {counts.get('matched_pairs', 0):,}"),
        ]
    else:
        cl = m.get("clustering", {})
        facts += [
            (
                "HDBSCAN",
                f"{cl.get('mode')} mode on {m.get('embeddings', {}).get('vectors')} vectors, "
                f"min_cluster_size {cl.get('min_cluster_size')}, selection {cl.get('selection')}",
            ),
            (
                "clusters",
                f"{counts.get('clusters', 0):,}; largest {counts.get('largest_cluster', 0):,}; noise rows {counts.get('noise_rows', 0):,}",
            ),
        ]
    if c.metrics:
        mm = c.metrics
        facts.append(
            (
                "scores against gold",
                f"ARI {mm['ari']:.4f} · NMI {mm['nmi']:.4f} · B-cubed P/R/F1 "
                f"{mm['bcubed_precision']:.3f}/{mm['bcubed_recall']:.3f}/{mm['bcubed_f1']:.3f} · pairwise F1 {mm['f1']:.3f}"
                + (f" · noise {mm['noise_fraction']:.1%}" if "noise_fraction" in mm else ""),
            )
        )
    facts.append(("listed", _listed(c)))
    facts.append(("created", str(m.get("created"))))
    return facts


def _certainty_name(c: ReportContent) -> str:
    """What a group's ``certainty`` is, as the page names it."""
    if c.job == "cluster":
        return "cohesion"
    if c.job == "link":
        return AXIS_NAMES[c.axis]
    return f"weakest link: {AXIS_NAMES[c.axis]}"


def _listed(c: ReportContent) -> str:
    """The gallery's order in words."""
    what = {"dedupe": "weakest accepted link", "cluster": "cohesion", "link": "link"}[c.job]
    on = "" if c.job == "cluster" else f" ({AXIS_NAMES[c.axis]})"
    return {
        "least-certain": f"least certain first: {what}{on} ascending",
        "most-certain": f"most certain first: {what}{on} descending",
        "largest": "largest first",
    }[c.order] + " (eclip report --order; the page's order menu re-sorts)"


def _plot(svg: str, kind: str, caption: str = "", axis: str = "", threshold: float | None = None) -> dict[str, Any]:
    """One figure of the page: its SVG, ``kind`` and, for a threshold curve, the axis and the
    threshold drawn on it (``data-`` attributes) and a caption in words."""
    return {
        "svg": Markup(svg),  # drawn by matplotlib from numbers and our own labels
        "kind": kind,
        "caption": caption,
        "axis": axis,
        "threshold": "" if threshold is None else f"{threshold:g}",
    }


def _dedupe_plots(c: ReportContent) -> list[dict[str, Any]]:
    mt = c.manifest.get("matching", {})
    threshold = mt.get("threshold")
    threshold = float(threshold) if isinstance(threshold, (int, float)) else None
    out = []
    if len(c.scores):
        svg = plots.score_histogram(
            c.scores,
            c.matched.astype(bool),
            "Candidate pair scores",
            "combined score",
            ("not matched", "matched"),
            threshold if c.axis == "score" else None,
        )
        out.append(_plot(svg, "scores"))
    out.append(_plot(plots.size_histogram(c.sizes, "Match group sizes (singletons included)", "groups"), "sizes"))
    if c.curve:
        name = AXIS_NAMES[c.axis]
        svg = plots.pr_curve(
            c.curve,
            "Pairwise precision / recall vs threshold",
            f"threshold on {name}",
            threshold,
            unit_interval=c.axis == "match_probability",
        )
        caption = f"Pairs regrouped at each threshold on the {name}"
        if threshold is not None:
            caption += f"; red line: this run's threshold, {threshold:g} on the {name}"
        out.append(_plot(svg, "pr", caption + ".", c.axis, threshold))
    return out


def _plots(c: ReportContent) -> list[dict[str, Any]]:
    if c.job == "dedupe":
        return _dedupe_plots(c)
    out = []
    if c.job == "link":
        if len(c.scores):
            svg = plots.score_histogram(
                c.scores,
                c.matched.astype(bool),
                "Candidate cross pair scores",
                "combined score",
                ("not linked", "linked"),
            )
            out.append(_plot(svg, "scores"))
        if c.curve:
            svg = plots.pr_curve(c.curve, "Cross-pair precision / recall vs score threshold", "threshold (raw score)")
            out.append(_plot(svg, "pr", axis="score"))
        return out
    svg = plots.score_histogram(
        c.scores, c.matched.astype(bool), "HDBSCAN membership probability", "probability", ("noise", "clustered")
    )
    out.append(_plot(svg, "scores"))
    if len(c.sizes):
        out.append(_plot(plots.size_histogram(c.sizes, "Cluster sizes", "clusters"), "sizes"))
    if c.curve:
        svg = plots.pr_curve(
            c.curve,
            "B-cubed precision / recall vs min probability",
            "rows below this probability count as noise",
            unit_interval=True,
        )
        out.append(_plot(svg, "pr", axis="membership_probability"))
    return out


def review_frame(c: ReportContent, run: Path) -> pl.DataFrame:
    """Rows to review: every row of a listed group or cluster (or every listed link), in the
    gallery's order (``c.order``: least certain first by default), ``decision`` left empty."""
    rows = []
    if c.job == "link":
        return pl.DataFrame(
            [
                (
                    g["members"][0][1].removeprefix("LEFT "),
                    g["members"][1][1].removeprefix("RIGHT "),
                    "",
                    g["members"][0][2],
                    g["members"][1][2],
                )
                for g in c.groups
            ],
            schema={
                "left_id": pl.String,
                "right_id": pl.String,
                "decision": pl.String,
                "left_title": pl.String,
                "right_title": pl.String,
            },
            orient="row",
        )
    if c.job == "dedupe":
        for g in c.groups:
            rows += [(g["gid"], m[1], "", m[2]) for m in g["members"]]
    else:
        rank = pl.DataFrame(
            {"cluster_id": [g["gid"] for g in c.groups], "_rank": list(range(len(c.groups)))},
            schema={"cluster_id": pl.Int64, "_rank": pl.Int64},
        )
        clusters = (
            pl.read_parquet(run / "clusters.parquet")
            .with_columns(pl.col("cluster_id").cast(pl.Int64))
            .join(rank, on="cluster_id")
            .sort("_rank", maintain_order=True)
        )
        titles = {m[1]: m[2] for g in c.groups for m in g["members"]}
        rows = [
            (cid, i, "", titles.get(i, ""))
            for i, cid in zip(clusters["id"].to_list(), clusters["cluster_id"].to_list())
        ]
    frame = pl.DataFrame(
        rows, schema={"group_id": pl.Int64, "id": pl.String, "decision": pl.String, "title": pl.String}, orient="row"
    )
    if c.job == "dedupe":  # the run the review is for: dedupe --review checks it (a stale file is refused)
        frame = frame.with_columns(
            pl.lit(groups_fingerprint(pl.read_parquet(run / "groups.parquet", columns=["id", "group_id"]))).alias(
                RUN_COLUMN
            ),
            pl.lit(str(Path(run).resolve())).alias(RUN_DIR_COLUMN),
        )
    return frame


def write_report(
    run: str | Path,
    out: str | Path | None = None,
    review_out: str | Path | None = None,
    **content_args: Any,
) -> dict[str, Any]:
    """Write ``report.html`` and ``review.csv`` for a dedupe or cluster run directory.

    Args:
        run: the run directory. out: the HTML file (default ``run/report.html``).
        review_out: the review CSV (default ``run/review.csv``): ``group_id, id, decision,
            title`` for every row of the listed groups, decision empty (fill in ``same`` or
            ``different``; ``eclip dedupe --review`` reads it). A filled file there is never
            blanked (:func:`eclip.report.review.write_review`).
        content_args: passed to :func:`eclip.report.content.build_content` (gold labels,
            image root, caps, ``order``: the gallery's and the review file's order, least
            certain first by default).

    Returns:
        ``{"html", "review", "review_note", "groups", "thumbnails", "bytes"}``; ``review`` is
        where the review went and ``review_note`` what happened to decisions already filled
        in (:func:`eclip.report.review.write_review`: merged in, or the filled file left as
        it is and the review written beside it), ``None`` when there were none.

    Raises:
        RunDirError, GoldError: see :func:`build_content`.
        InputFileError: ``out`` or ``review_out`` is the run's catalog or another input, or
            ``out`` is an existing file that is not HTML.
        ValueError: an unknown ``order``.
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    run = Path(run)
    c = build_content(run, **content_args)
    inputs = [*_catalogs(c.manifest), content_args.get("gold")]  # never written over
    out = Path(out) if out else run / "report.html"
    refuse_overwrite(out, inputs)
    if Path(out).exists() and Path(out).suffix.lower() != ".html":
        raise InputFileError(f"{out}: exists and is not an .html file; eclip writes the report to a new or .html path.")
    review = write_review(review_frame(c, run), Path(review_out) if review_out else run / "review.csv", inputs)
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html", "j2"], default=True)
    )
    data = {
        "groups": c.groups,
        "thumbs": {str(k): v for k, v in c.thumbs.items()},
        "pageSize": PAGE_SIZE,
        "hasImages": bool(c.manifest.get("inputs", {}).get("image_col")),
        "groupName": {"dedupe": "match groups", "link": "links"}.get(c.job, "clusters"),
        "certaintyName": _certainty_name(c),
        "scoreName": {"dedupe": "strongest", "link": "score" if c.axis != "score" else None}.get(c.job),
        "valueName": {"cluster": "probability", "dedupe": "best link"}.get(c.job, "score"),
        "order": c.order,
    }
    html = env.get_template("template.html.j2").render(
        job=c.job,
        catalog_name=_catalog_name(c.manifest),
        facts=_facts(c),
        notes=c.notes,
        plots=_plots(c),
        orders=[(o, ORDER_LABELS[o]) for o in ORDERS],
        order=c.order,
        review_name=review.path.name,
        data_json=Markup(_json_for_script(data)),
    )
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return {
        "html": str(out),
        "review": str(review.path),
        "review_note": review.message(),
        "groups": len(c.groups),
        "thumbnails": len(c.thumbs),
        "bytes": out.stat().st_size,
    }
