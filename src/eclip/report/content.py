"""What a report shows: the groups (dedupe) or clusters (cluster) of a run directory, their
rows' titles and thumbnails, the pairs that linked them, and labelled curves.

Everything here is plain data (lists, dicts, numbers, catalog strings as they are); escaping
is the template's job (:mod:`eclip.report.html`).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import given_dialect, load_catalog
from eclip.catalog.images import ImageFailure, ImageSettings, open_image
from eclip.errors import EclipError, RunDirError
from eclip.evaluation import cluster_metrics, load_gold, noise_as_singletons, threshold_curve
from eclip.evaluation.gold import load_gold_cross_pairs
from eclip.matcher import ModalityThresholds, passing_signals
from eclip.progress import progress_bar
from eclip.rundir import MANIFEST, read_json

#: Gallery members listed per cluster (the most confident first); the rest are counted.
MEMBERS_SHOWN = 24


@dataclass
class ReportContent:
    """Everything one report renders.

    Attributes:
        job: ``dedupe``, ``cluster`` or ``link``. manifest: the run's manifest.
        groups: gallery entries, largest first: ``{"gid", "size", "score", "label", "terms",
            "members": [[row, id, title, value]], "edges": [[i, j, score, linked_by, detail]],
            "more"}``; ``row`` indexes ``thumbs``, ``i, j`` index ``members``.
        thumbs: ``{row: "data:image/jpeg;base64,..."}``.
        scores: ``(p,)`` pair scores (dedupe) or membership probabilities (cluster) for the
            histogram; matched: which of them are matches / clustered rows.
        sizes: ``(g,)`` group or cluster sizes.
        curve: labelled runs: ``[(threshold, precision, recall, f1)]``; metrics: their scores.
        notes: lines shown under the header (caps hit, images missing).
    """

    job: str
    manifest: dict[str, Any]
    groups: list[dict[str, Any]]
    thumbs: dict[int, str]
    scores: np.ndarray
    matched: np.ndarray
    sizes: np.ndarray
    curve: list[tuple[float, float, float, float]] | None = None
    metrics: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


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
    cat = load_catalog(
        path,
        inputs.get("id_col") or "id",
        inputs.get("text_cols"),
        inputs.get("image_col"),
        **given_dialect(inputs.get("dialect")),
    )
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


def _detail(row: dict[str, Any]) -> str:
    names = (
        ("text_score", "text"),
        ("cos_embedding", "emb"),
        ("cos_tfidf", "tfidf"),
        ("code", "code"),
        ("cos_image", "image"),
        ("cos_fused", "fused"),
        ("phash_distance", "pHash"),
    )
    parts = [
        f"{label} {row[c]:.2f}" if c != "phash_distance" else f"{label} {int(row[c])} bits"
        for c, label in names
        if row.get(c) is not None
    ]
    return " · ".join(parts)


def dedupe_content(
    run: Path, manifest: dict[str, Any], ids: list[str], texts: list[str], max_groups: int, gold: np.ndarray | None
) -> ReportContent:
    groups = pl.read_parquet(run / "groups.parquet")
    pairs = pl.read_parquet(run / "pairs.parquet")
    pos = {x: i for i, x in enumerate(ids)}
    multi = groups.filter(pl.col("group_size") > 1)
    order = (
        multi.group_by("group_id")
        .agg(pl.len().alias("size"), pl.col("score").max().alias("best"))
        .sort(["size", "best", "group_id"], descending=[True, True, False])
    )
    notes = []
    if len(order) > max_groups:
        notes.append(f"Showing the {max_groups:,} largest of {len(order):,} match groups (--max-groups).")
        order = order.head(max_groups)
    keep = set(order["group_id"].to_list())
    members = multi.filter(pl.col("group_id").is_in(list(keep)))
    by_group: dict[int, list[dict]] = {}
    for r in members.iter_rows(named=True):
        by_group.setdefault(r["group_id"], []).append(r)
    gid_of = dict(zip(members["id"].to_list(), members["group_id"].to_list()))
    thresholds = manifest.get("matching", {}).get("thresholds", {})
    edges: dict[int, list[dict]] = {}
    matched = pairs.filter(pl.col("matched"))
    matched = matched.with_columns(pl.Series("linked_by", _linked_by(matched, thresholds), dtype=pl.String))
    for r in matched.iter_rows(named=True):
        g = gid_of.get(r["id_a"])
        if g is not None and g == gid_of.get(r["id_b"]):
            edges.setdefault(g, []).append(r)
    out = []
    for g, size, best in order.iter_rows():
        rows = by_group[g]
        local = {r["id"]: i for i, r in enumerate(rows)}
        out.append(
            {
                "gid": int(g),
                "size": int(size),
                "score": None if best is None else round(float(best), 4),
                "label": f"group {g}",
                "terms": [],
                "members": [
                    [
                        pos[r["id"]],
                        r["id"],
                        texts[pos[r["id"]]],
                        None if r["score"] is None else round(float(r["score"]), 3),
                    ]
                    for r in rows
                ],
                "edges": [
                    [local[e["id_a"]], local[e["id_b"]], round(float(e["score"]), 3), e["linked_by"], _detail(e)]
                    for e in edges.get(g, [])
                ],
                "more": 0,
            }
        )
    curve = None
    if gold is not None:
        a = np.array([pos[x] for x in pairs["id_a"].to_list()], dtype=np.int64)
        b = np.array([pos[x] for x in pairs["id_b"].to_list()], dtype=np.int64)
        curve = threshold_curve(
            len(ids), a, b, pairs["score"].fill_null(0.0).to_numpy(), gold, _method_used(manifest), steps=41
        )
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
    )


def cluster_content(
    run: Path, manifest: dict[str, Any], ids: list[str], texts: list[str], max_groups: int, gold: np.ndarray | None
) -> ReportContent:
    clusters = pl.read_parquet(run / "clusters.parquet")
    summary = pl.read_parquet(run / "cluster_summary.parquet").sort("size", descending=True)
    pos = {x: i for i, x in enumerate(ids)}
    notes = []
    if len(summary) > max_groups:
        notes.append(f"Showing the {max_groups:,} largest of {len(summary):,} clusters (--max-groups).")
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
                "score": round(float(s["cohesion"]), 4),
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
        order = np.array([pos[x] for x in clusters["id"].to_list()], dtype=np.int64)
        labels = np.full(len(ids), -1, dtype=np.int64)
        labels[order] = clusters["cluster_id"].to_numpy()
        prob = np.zeros(len(ids), dtype=np.float32)
        prob[order] = clusters["probability"].to_numpy()
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
    )


def _link_catalogs(manifest: dict[str, Any]) -> tuple[list[str], list[str], int]:
    """Both sides' ids and titles, LEFT's rows first, and LEFT's row count."""
    ids: list[str] = []
    texts: list[str] = []
    sizes = []
    for side in ("left", "right"):
        inputs = manifest.get("inputs", {}).get(side) or {}
        path = inputs.get("catalog")
        if not path or not Path(path).exists():
            raise RunDirError(
                f"the link run's {side.upper()} catalog {path!r} is gone; the report needs its titles. Restore it or rerun the job."
            )
        cat = load_catalog(path, inputs.get("id_col") or "id", inputs.get("text_cols"), None)
        ids += cat.ids
        texts += cat.texts
        sizes.append(len(cat))
    return ids, texts, sizes[0]


def link_curve(
    cand: pl.DataFrame,
    nl: int,
    lpos: dict[str, int],
    rpos: dict[str, int],
    mode: str,
    gold: set[tuple[str, str]],
    steps: int = 41,
) -> list[tuple[float, float, float, float]]:
    """Cross-pair precision / recall / F1 of a link run's assignment redone at each raw-score
    threshold (``many-to-many`` counts every candidate pair above it)."""
    from eclip.matcher.assignment import one_to_many, one_to_one

    score = cand["score"].fill_null(-np.inf).to_numpy().astype(np.float64)
    l = np.array([lpos[x] for x in cand["left_id"].to_list()], dtype=np.int64)
    r = np.array([rpos[x] for x in cand["right_id"].to_list()], dtype=np.int64)
    is_gold = np.array(
        [(x, y) in gold for x, y in zip(cand["left_id"].to_list(), cand["right_id"].to_list())], dtype=bool
    )
    finite = score[np.isfinite(score)]
    curve = []
    for t in np.quantile(finite, np.linspace(0.5, 1.0, steps)) if len(finite) else []:
        sel = np.flatnonzero(score >= t)
        if mode == "many-to-many":
            keep = sel
        else:
            fn = one_to_one if mode == "one-to-one" else one_to_many
            keep = sel[fn(nl, len(rpos), l[sel], r[sel], score[sel] - t + 1e-6)]
        tp = int(is_gold[keep].sum())
        p = tp / len(keep) if len(keep) else 1.0
        rec = tp / len(gold) if gold else 0.0
        curve.append((float(t), p, rec, 2 * p * rec / (p + rec) if p + rec else 0.0))
    return curve


def link_content(run: Path, manifest: dict[str, Any], gold_path: str | Path | None, max_groups: int) -> ReportContent:
    """A link run: each link as a two-row entry (LEFT row, RIGHT row) with its signals; the
    candidate score histogram; with gold pairs, precision / recall against the threshold."""
    ids, texts, nl = _link_catalogs(manifest)
    lpos = {x: i for i, x in enumerate(ids[:nl])}
    rpos = {x: i for i, x in enumerate(ids[nl:])}
    links = pl.read_parquet(run / "links.parquet")
    cand = pl.read_parquet(run / "candidates.parquet")
    notes = []
    if len(links) > max_groups:
        notes.append(f"Showing the {max_groups:,} best-scoring of {len(links):,} links (--max-groups).")
    out = []
    for i, row in enumerate(links.head(max_groups).iter_rows(named=True)):
        a, b = lpos[row["left_id"]], nl + rpos[row["right_id"]]
        out.append(
            {
                "gid": i,
                "size": 2,
                "score": None if row["score"] is None else round(float(row["score"]), 4),
                "label": f"link {i + 1}",
                "terms": [],
                "members": [
                    [a, f"LEFT {row['left_id']}", texts[a], None],
                    [b, f"RIGHT {row['right_id']}", texts[b], None],
                ],
                "edges": [[0, 1, round(float(row["score"] or 0.0), 3), "link", _detail(row)]],
                "more": 0,
            }
        )
    curve = None
    if gold_path is not None:
        gold, _, _ = load_gold_cross_pairs(gold_path, set(lpos), set(rpos))
        curve = link_curve(cand, nl, lpos, rpos, manifest.get("matching", {}).get("mode", "one-to-one"), gold)
    return ReportContent(
        "link",
        manifest,
        out,
        {},
        cand["score"].fill_null(np.nan).to_numpy(),
        cand["linked"].to_numpy(),
        np.full(len(links), 2),
        curve,
        None,
        notes,
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
) -> ReportContent:
    """Read a dedupe or cluster run directory into a :class:`ReportContent`.

    Args:
        run: the run directory (``manifest.json`` with ``job`` ``dedupe`` or ``cluster``).
        gold, gold_col, gold_id_col, singleton_clusters: labels for the precision/recall
            curve (as :func:`eclip.evaluation.load_gold`); a labelled cluster run reuses its own.
        image_root: where the catalog's relative image paths live, when not where the run said.
        max_groups: gallery entries kept, largest first. max_thumbnails: images embedded.

    Raises:
        RunDirError: not a dedupe or cluster run, or its catalog is gone. GoldError: bad labels.
    """
    run = Path(run)
    manifest = read_json(run / MANIFEST)
    job = manifest.get("job")
    if job == "link":
        return link_content(run, manifest, gold, max_groups)
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
            run, manifest, ids, texts, max_groups, labels
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
