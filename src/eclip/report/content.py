"""What a report shows: the groups (dedupe) or clusters (cluster) of a run directory, their
rows' titles and thumbnails, the pairs that linked them, and labelled curves.

Everything here is plain data (lists, dicts, numbers, catalog strings as they are); escaping
is the template's job (:mod:`eclip.report.html`).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import load_recorded_catalog
from eclip.catalog.images import ImageFailure, ImageSettings, open_image
from eclip.errors import EclipError, RunDirError
from eclip.evaluation import cluster_metrics, load_gold, noise_as_singletons, threshold_curve
from eclip.evaluation.metrics import pairwise_prf
from eclip.matcher import ModalityThresholds, passing_signals
from eclip.matcher.grouping import group
from eclip.progress import progress_bar
from eclip.report.entries import ReportContent, pair_detail
from eclip.report.order import DEFAULT_ORDER, ORDER_WORDS, ORDERS, order_frame, rounded, threshold_axis
from eclip.rundir import MANIFEST, read_json

#: Gallery members listed per cluster (the most confident first); the rest are counted.
MEMBERS_SHOWN = 24


def _catalog(
    manifest: dict[str, Any], image_root: Path | None
) -> tuple[list[str], list[str], list[str | None] | None, ImageSettings | None]:
    """ids, titles, image refs and image settings of the run's catalog."""
    inputs = manifest.get("inputs", {})
    path = inputs.get("catalog")
    if not path or not Path(path).exists():
        raise RunDirError(
            f"the run's catalog {path!r} is gone; the report needs its titles. Restore it or rerun the job."
        )
    cat = load_recorded_catalog(inputs, images=True)
    settings = None
    if cat.images is not None:
        root = Path(image_root or inputs.get("image_root") or cat.root)
        settings = ImageSettings(
            root=root,
            cache_dir=Path(manifest.get("embeddings", {}).get("dir", root)) / "image_cache",
            allow_outside_root=bool(inputs.get("allow_outside_root")),
        )
    return cat.ids, cat.texts, cat.images, settings


def thumbnail(ref: str | None, settings: ImageSettings, px: int = 112, quality: int = 70) -> str | None:
    """A JPEG data URI of the image, longest side ``px``; ``None`` when it cannot be read
    (missing, corrupt, outside the root: see :func:`eclip.catalog.images.open_image`)."""
    try:
        im = open_image(ref, settings)
    except ImageFailure:
        return None
    im.thumbnail((px, px))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _method_used(manifest: dict[str, Any]) -> str:
    """The grouping method a dedupe run ran (``auto`` resolved; ``mutual`` for old runs)."""
    matching = manifest.get("matching", {})
    method = matching.get("method_used") or matching.get("method", "mutual")
    return "mutual" if method == "auto" else method


def _linked_by(pairs: pl.DataFrame, thresholds: dict[str, Any]) -> list[str]:
    """Per pair, the signals that pass their own threshold, joined by ``+`` (the matcher's
    rule, :func:`eclip.matcher.passing_signals`); ``review`` when none does."""
    columns = ("text_score", "cos_image", "cos_fused", "phash_distance")
    signals = {c: pairs[c].cast(pl.Float32).fill_null(np.nan).to_numpy() for c in columns if c in pairs.columns}
    passed = passing_signals(signals, ModalityThresholds(**thresholds)) if signals else {}
    return ["+".join(name for name, ok in passed.items() if ok[i]) or "review" for i in range(len(pairs))]


def probability_curve(
    n: int, a: np.ndarray, b: np.ndarray, probability: np.ndarray, gold: np.ndarray, method: str, steps: int = 41
) -> list[tuple[float, float, float, float]]:
    """Pairwise ``(threshold, precision, recall, f1)`` of the groups made at each of ``steps``
    evenly spaced match-probability thresholds from 0 to 1 (``(p,)`` float ``probability``,
    NaN counted as 0), as the run grouped them (:func:`eclip.matcher.grouping.group`)."""
    p = np.nan_to_num(np.asarray(probability, dtype=np.float32), nan=0.0)
    return [
        (float(t), *pairwise_prf(group(n, a, b, p, float(t), method).labels, gold))
        for t in np.linspace(0.0, 1.0, steps).round(4)
    ]


def _inside(pairs: pl.DataFrame, multi: pl.DataFrame) -> pl.DataFrame:
    """The accepted pairs whose two rows share a match group, with that ``group_id``."""
    gids = multi.select("id", "group_id")
    return (
        pairs.filter(pl.col("matched"))
        .join(gids.rename({"id": "id_a"}), on="id_a")
        .join(gids.rename({"id": "id_b", "group_id": "_gb"}), on="id_b")
        .filter(pl.col("group_id") == pl.col("_gb"))
        .drop("_gb")
    )


def dedupe_content(
    run: Path,
    manifest: dict[str, Any],
    ids: list[str],
    texts: list[str],
    max_groups: int,
    gold: np.ndarray | None,
    order: str = DEFAULT_ORDER,
) -> ReportContent:
    groups = pl.read_parquet(run / "groups.parquet")
    pairs = pl.read_parquet(run / "pairs.parquet")
    axis = threshold_axis(manifest, pairs["match_probability"] if "match_probability" in pairs.columns else None)
    on = "match_probability" if axis == "match_probability" else "score"
    pos = {x: i for i, x in enumerate(ids)}
    multi = groups.filter(pl.col("group_size") > 1)
    inside = _inside(pairs, multi).with_columns(pl.col(on).cast(pl.Float64).fill_nan(None).alias("_on"))
    weakest = inside.group_by("group_id").agg(pl.col("_on").min().round(4).alias("certainty"))
    summary = order_frame(
        multi.group_by("group_id")
        .agg(pl.len().alias("size"), pl.col("score").max().alias("best"))
        .join(weakest, on="group_id", how="left"),
        order,
        "group_id",
    )
    notes = []
    if len(summary) > max_groups:
        notes.append(
            f"Showing the {max_groups:,} {ORDER_WORDS[order]} of {len(summary):,} match groups (--max-groups, --order)."
        )
        summary = summary.head(max_groups)
    keep = summary["group_id"].to_list()
    members = multi.filter(pl.col("group_id").is_in(keep))
    by_group: dict[int, list[dict]] = {}
    for r in members.iter_rows(named=True):
        by_group.setdefault(r["group_id"], []).append(r)
    thresholds = manifest.get("matching", {}).get("thresholds", {})
    shown = inside.filter(pl.col("group_id").is_in(keep)).sort(["_on", "score"], nulls_last=True, maintain_order=True)
    shown = shown.with_columns(pl.Series("linked_by", _linked_by(shown, thresholds), dtype=pl.String))
    edges: dict[int, list[dict]] = {}
    for r in shown.iter_rows(named=True):
        edges.setdefault(r["group_id"], []).append(r)
    out = []
    for g, size, best, certainty in summary.select("group_id", "size", "best", "certainty").iter_rows():
        rows = by_group[g]
        local = {r["id"]: i for i, r in enumerate(rows)}
        out.append(
            {
                "gid": int(g),
                "size": int(size),
                "score": rounded(best),
                "certainty": rounded(certainty),
                "label": f"group {g}",
                "terms": [],
                "members": [[pos[r["id"]], r["id"], texts[pos[r["id"]]], rounded(r["score"], 3)] for r in rows],
                "edges": [
                    [local[e["id_a"]], local[e["id_b"]], round(float(e["score"]), 3), e["linked_by"], pair_detail(e)]
                    for e in edges.get(g, [])
                ],
                "more": 0,
            }
        )
    curve = None
    if gold is not None:
        a = np.array([pos[x] for x in pairs["id_a"].to_list()], dtype=np.int64)
        b = np.array([pos[x] for x in pairs["id_b"].to_list()], dtype=np.int64)
        if axis == "match_probability":
            prob = pairs["match_probability"].cast(pl.Float32).fill_null(np.nan).to_numpy()
            curve = probability_curve(len(ids), a, b, prob, gold, _method_used(manifest))
        else:
            score = pairs["score"].fill_null(0.0).to_numpy()
            curve = threshold_curve(len(ids), a, b, score, gold, _method_used(manifest), steps=41)
    sizes = groups.group_by("group_id").len()["len"].to_numpy()
    return ReportContent(
        "dedupe",
        manifest,
        out,
        {},
        pairs["score"].fill_null(np.nan).to_numpy(),
        pairs["matched"].to_numpy(),
        sizes,
        curve,
        None,
        notes,
        axis,
        order,
    )


def cluster_content(
    run: Path,
    manifest: dict[str, Any],
    ids: list[str],
    texts: list[str],
    max_groups: int,
    gold: np.ndarray | None,
    order: str = DEFAULT_ORDER,
) -> ReportContent:
    clusters = pl.read_parquet(run / "clusters.parquet")
    summary = order_frame(
        pl.read_parquet(run / "cluster_summary.parquet").with_columns(
            pl.col("cohesion").cast(pl.Float64).round(4).alias("certainty")
        ),
        order,
        "cluster_id",
    )
    pos = {x: i for i, x in enumerate(ids)}
    notes = []
    if len(summary) > max_groups:
        notes.append(
            f"Showing the {max_groups:,} {ORDER_WORDS[order]} of {len(summary):,} clusters (--max-groups, --order)."
        )
        summary = summary.head(max_groups)
    ranked = clusters.filter(pl.col("cluster_id") >= 0).sort(
        ["cluster_id", "probability", "outlier_score"], descending=[False, True, False]
    )
    by_cluster = {c: frame for (c,), frame in ranked.group_by("cluster_id", maintain_order=True)}
    out = []
    for s in summary.iter_rows(named=True):
        c = s["cluster_id"]
        frame = by_cluster[c]
        medoid = s["medoid_id"]
        shown = [medoid] + [x for x in frame["id"].to_list() if x != medoid][: MEMBERS_SHOWN - 1]
        member_prob = dict(zip(frame["id"].to_list(), frame["probability"].to_list()))
        label = f"cluster {c}"
        if s.get("gold_purity") is not None:
            label += f" · gold purity {s['gold_purity']:.0%}"
        out.append(
            {
                "gid": int(c),
                "size": int(s["size"]),
                "score": rounded(s["cohesion"]),
                "certainty": rounded(s["certainty"]),
                "label": label,
                "terms": list(s["top_terms"]),
                "members": [[pos[x], x, texts[pos[x]], round(float(member_prob[x]), 3)] for x in shown],
                "edges": [],
                "more": int(s["size"]) - len(shown),
            }
        )
    curve = None
    metrics = manifest.get("metrics")
    if gold is not None:
        at = np.array([pos[x] for x in clusters["id"].to_list()], dtype=np.int64)
        labels = np.full(len(ids), -1, dtype=np.int64)
        labels[at] = clusters["cluster_id"].to_numpy()
        prob = np.zeros(len(ids), dtype=np.float32)
        prob[at] = clusters["probability"].to_numpy()
        curve = []
        for t in np.linspace(0.0, 1.0, 21):
            m = cluster_metrics(noise_as_singletons(np.where(prob >= t, labels, -1)), gold)
            curve.append((float(t), m.bcubed_precision, m.bcubed_recall, m.bcubed_f1))
    sizes = summary["size"].to_numpy() if len(summary) else np.zeros(0, np.int64)
    return ReportContent(
        "cluster",
        manifest,
        out,
        {},
        clusters["probability"].to_numpy(),
        (clusters["cluster_id"] >= 0).to_numpy(),
        sizes,
        curve,
        metrics,
        notes,
        "score",
        order,
    )


def build_content(
    run: str | Path,
    gold: str | Path | None = None,
    gold_col: str | None = None,
    gold_id_col: str | None = None,
    singleton_clusters: tuple[str, ...] = (),
    image_root: Path | None = None,
    max_groups: int = 10_000,
    max_thumbnails: int = 5_000,
    order: str = DEFAULT_ORDER,
) -> ReportContent:
    """Read a dedupe, cluster or link run directory into a :class:`ReportContent`.

    Args:
        run: the run directory (``manifest.json`` with ``job`` ``dedupe``, ``cluster`` or ``link``).
        gold, gold_col, gold_id_col, singleton_clusters: labels for the precision/recall
            curve (as :func:`eclip.evaluation.load_gold`); a labelled cluster run reuses its own.
        image_root: where the catalog's relative image paths live, when not where the run said.
        max_groups: gallery entries kept, the first in ``order``. max_thumbnails: images embedded.
        order: the gallery's order, one of :data:`eclip.report.order.ORDERS`; the default,
            ``least-certain``, lists first the groups whose weakest accepted link is weakest.

    Raises:
        RunDirError: not a dedupe, cluster or link run, or its catalog is gone. GoldError: bad
            labels. ValueError: unknown ``order``.
    """
    from eclip.report.links import link_content

    if order not in ORDERS:
        raise ValueError(f"unknown report order {order!r}; choose one of {', '.join(ORDERS)}")
    run = Path(run)
    manifest = read_json(run / MANIFEST)
    job = manifest.get("job")
    if job == "link":
        return link_content(run, manifest, gold, max_groups, order)
    if job not in ("dedupe", "cluster"):
        raise RunDirError(
            f"{run}: not a dedupe or cluster run directory (its manifest.json says job={job!r}); run `eclip dedupe` or `eclip cluster` first."
        )
    ids, texts, images, settings = _catalog(manifest, image_root)
    if job == "cluster" and gold is None and manifest.get("gold"):
        g = manifest["gold"]
        gold, gold_col, singleton_clusters = g["file"], g["column"], tuple(g.get("singleton_clusters") or ())
    labels = None
    if gold is not None:
        labels = load_gold(
            gold, ids, gold_id_col or manifest.get("inputs", {}).get("id_col") or "id", gold_col, singleton_clusters
        )
    try:
        content = (dedupe_content if job == "dedupe" else cluster_content)(
            run, manifest, ids, texts, max_groups, labels, order
        )
    except (KeyError, pl.exceptions.PolarsError) as exc:
        raise EclipError(f"{run}: its outputs do not match its catalog ({exc}); rerun the job.") from None
    if images is not None and settings is not None:
        rows = list(dict.fromkeys(m[0] for g in content.groups for m in g["members"]))
        if len(rows) > max_thumbnails:
            content.notes.append(
                f"Thumbnails for the first {max_thumbnails:,} of {len(rows):,} rows shown (--max-thumbnails)."
            )
            rows = rows[:max_thumbnails]
        missing = 0
        with progress_bar("thumbnails", len(rows), "images") as (bar, task):
            for r in rows:
                uri = thumbnail(images[r], settings)
                if uri is None:
                    missing += 1
                else:
                    content.thumbs[r] = uri
                bar.advance(task)
        if missing:
            content.notes.append(
                f"{missing:,} image(s) could not be read (missing, corrupt or outside the image root) and show as blanks."
            )
    return content
