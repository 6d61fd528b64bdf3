"""What a report shows of a link run: each link as a LEFT row and a RIGHT row with its
signals, the candidate score histogram, and with gold cross pairs precision / recall against a
raw-score threshold (see :mod:`eclip.report.content` for dedupe and cluster runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import load_recorded_catalog
from eclip.errors import RunDirError
from eclip.evaluation.gold import load_gold_cross_pairs
from eclip.report.entries import ReportContent, pair_detail
from eclip.report.order import DEFAULT_ORDER, ORDER_WORDS, order_frame, rounded, threshold_axis


def _link_catalogs(manifest: dict[str, Any]) -> tuple[list[str], list[str], int]:
    """Both sides' ids and titles, LEFT's rows first, and LEFT's row count; each file read
    with the delimiter and encoding the run was told (``--left-sep``, ``--right-encoding``,
    ...), else sniffed again as the run sniffed it."""
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
        cat = load_recorded_catalog(inputs)
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


def link_content(
    run: Path, manifest: dict[str, Any], gold_path: str | Path | None, max_groups: int, order: str = DEFAULT_ORDER
) -> ReportContent:
    """A link run: each link as a two-row entry (LEFT row, RIGHT row) with its signals, in
    ``order`` (a link's certainty is its match probability or score, whichever the run's
    threshold applies to); the candidate score histogram; with gold pairs, precision / recall
    against a raw-score threshold.

    Raises:
        RunDirError: a catalog is gone. GoldError: bad gold pairs.
    """
    ids, texts, nl = _link_catalogs(manifest)
    lpos = {x: i for i, x in enumerate(ids[:nl])}
    rpos = {x: i for i, x in enumerate(ids[nl:])}
    links = pl.read_parquet(run / "links.parquet")
    cand = pl.read_parquet(run / "candidates.parquet")
    axis = threshold_axis(manifest, links["match_probability"] if "match_probability" in links.columns else None)
    on = "match_probability" if axis == "match_probability" else "score"
    ranked = order_frame(
        links.with_row_index("gid").with_columns(
            pl.lit(2).alias("size"), pl.col(on).cast(pl.Float64).fill_nan(None).round(4).alias("certainty")
        ),
        order,
    )
    notes = []
    if len(links) > max_groups:
        notes.append(
            f"Showing the {max_groups:,} {ORDER_WORDS[order]} of {len(links):,} links (--max-groups, --order)."
        )
    out = []
    for row in ranked.head(max_groups).iter_rows(named=True):
        i = int(row["gid"])
        a, b = lpos[row["left_id"]], nl + rpos[row["right_id"]]
        out.append(
            {
                "gid": i,
                "size": 2,
                "score": rounded(row["score"]),
                "certainty": rounded(row["certainty"]),
                "label": f"link {i + 1}",
                "terms": [],
                "members": [
                    [a, f"LEFT {row['left_id']}", texts[a], None],
                    [b, f"RIGHT {row['right_id']}", texts[b], None],
                ],
                "edges": [[0, 1, round(float(row["score"] or 0.0), 3), "link", pair_detail(row)]],
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
        axis,
        order,
    )
