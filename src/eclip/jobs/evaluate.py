"""The ``eval`` job: score groups, class predictions or adult flags against gold labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.classify import UNKNOWN
from eclip.errors import GoldError, RunDirError
from eclip.evaluation import (
    binary_gold,
    binary_metrics,
    blocking_recall,
    calibrate_methods,
    classification_metrics,
    cluster_metrics,
    load_class_labels,
    load_gold,
)
from eclip.evaluation.calibrate import SCORE_RANGE
from eclip.matcher import DEFAULT_METHOD
from eclip.rundir import MANIFEST, read_json, refuse_overwrite, write_json

#: Grouping methods ``eval --sweep`` sweeps on a run's pairs (``auto`` picks among the first two).
CALIBRATED_METHODS = ("mutual", "average", "components")


def evaluate_predictions(
    path: str | Path,
    gold_path: str | Path,
    gold_id_col: str = "id",
    gold_col: str | None = None,
    positive: str | None = None,
    precision_target: float = 0.9,
) -> dict[str, Any]:
    """Score ``predictions.parquet`` (``eclip classify``) or ``flagged.parquet`` (``eclip
    filter-adult``) against labelled rows; writes ``eval.json`` beside it.

    Predictions: accuracy, macro-F1 and a confusion summary over the labelled rows not used
    to train the probe (``in_train``); ``unknown`` and ``no_vector`` rows count as wrong.
    Flags: PR-AUC, ROC-AUC, recall at ``precision_target`` and precision/recall of the flags
    as written, over the labelled rows that were scored.

    Raises:
        RunDirError: not a predictions or flagged file. GoldError: bad gold file or ids.
    """
    p = Path(path)
    if not p.exists():
        raise RunDirError(f"{p}: no such file; run `eclip classify` or `eclip filter-adult` first.")
    frame = pl.read_parquet(p)
    if gold_col is None:
        raise GoldError("give --gold-col, the gold class column (for the adult filter, with --positive VALUE).")
    labels = load_class_labels(gold_path, gold_id_col, gold_col)
    ids = frame["id"].cast(pl.String).to_list()
    result: dict[str, Any] = {"file": str(p), "gold": str(gold_path), "gold_col": gold_col}
    if "adult_score" in frame.columns:
        rows, y = binary_gold(labels, ids, positive)
        scored = frame["status"].to_numpy()[rows] == "scored"
        rows, y = rows[scored], y[scored]
        score = frame["adult_score"].to_numpy()[rows]
        result["task"] = "filter"
        result["positive"] = positive
        result["metrics"] = binary_metrics(score, y, precision_target)
        flag = frame["flagged"].to_numpy()[rows]
        tp = int((flag & y).sum())
        result["metrics"]["flags_as_written"] = {
            "flagged": int(flag.sum()),
            "precision": round(tp / max(1, int(flag.sum())), 4),
            "recall": round(tp / max(1, int(y.sum())), 4),
        }
    elif {"label", "status"} <= set(frame.columns):
        pos = {x_: i for i, x_ in enumerate(ids)}
        rows = np.array([pos[i] for i in labels if i in pos], dtype=np.int64)
        if not len(rows):
            raise GoldError(f"{gold_path}: none of its ids is in {p}; check --gold-id-col.")
        in_train = (
            frame["in_train"].to_numpy()[rows] if "in_train" in frame.columns else np.zeros(len(rows), dtype=bool)
        )
        rows = rows[~in_train]
        if not len(rows):
            raise GoldError(f"{gold_path}: every labelled row trained the probe; evaluate on other rows.")
        pred = [
            v if s == "predicted" else UNKNOWN
            for v, s in zip(frame["label"].to_numpy()[rows], frame["status"].to_numpy()[rows])
        ]
        gold = [labels[ids[r]] for r in rows]
        result["task"] = "classification"
        result["excluded_training_rows"] = int(in_train.sum())
        result["metrics"] = classification_metrics(pred, gold)
    else:
        raise RunDirError(
            f"{p}: neither predictions (eclip classify) nor flags (eclip filter-adult); for groups use `eclip eval groups.parquet`."
        )
    write_json(result, p.parent / "eval.json")
    return result


def evaluate(
    groups_path: str | Path,
    gold_path: str | Path,
    gold_id_col: str = "id",
    gold_col: str | None = None,
    singleton_clusters: tuple[str, ...] = (),
    ks: tuple[int, ...] = (1, 5, 10),
    do_calibrate: bool = False,
    target_precision: float | None = None,
    calibration_out: str | Path | None = None,
) -> dict[str, Any]:
    """Score predicted groups against gold labels; optionally calibrate the threshold.

    Reads ``groups.parquet`` and, for blocking recall and calibration, the ``pairs.parquet``
    and ``manifest.json`` beside it. Writes ``eval.json`` beside the groups, and with
    ``do_calibrate`` a ``calibration.json`` (``calibration_out``) that ``eclip dedupe
    --calibration`` reads.

    Raises:
        GoldError: bad gold file. RunDirError: the groups file is missing or malformed.
    """
    gp = Path(groups_path)
    if not gp.exists():
        raise RunDirError(f"{gp}: no such groups file; run `eclip dedupe CATALOG --out DIR` first.")
    if calibration_out is not None:
        refuse_overwrite(calibration_out, [gp, gold_path, gp.parent / "pairs.parquet"])
    try:
        groups = pl.read_parquet(gp)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise RunDirError(
            f"{gp}: not a Parquet groups file ({str(exc).splitlines()[0][:120]}); pass the groups.parquet that `eclip dedupe` wrote, or its run directory."
        ) from None
    if not {"id", "group_id"} <= set(groups.columns):
        raise RunDirError(f"{gp}: not a groups file (needs columns id, group_id).")
    ids = groups["id"].cast(pl.String).to_list()
    pred = groups["group_id"].to_numpy()
    gold = load_gold(gold_path, ids, gold_id_col, gold_col, singleton_clusters)
    result: dict[str, Any] = {"groups": str(gp), "gold": str(gold_path), "rows": len(ids)}
    result["metrics"] = cluster_metrics(pred, gold).as_dict()
    pairs_path = gp.parent / "pairs.parquet"
    if pairs_path.exists():
        pairs = pl.read_parquet(pairs_path)
        pos = {x: i for i, x in enumerate(ids)}
        a = np.array([pos[x] for x in pairs["id_a"].to_list()], dtype=np.int64)
        b = np.array([pos[x] for x in pairs["id_b"].to_list()], dtype=np.int64)
        result["blocking"] = {
            k: round(v, 4)
            for k, v in blocking_recall(a, b, pairs["rank"].cast(pl.Float64).to_numpy(), gold, ks).items()
        }
        if do_calibrate:
            manifest = read_json(gp.parent / MANIFEST)
            matching = manifest.get("matching", {})
            used = matching.get("method_used") or matching.get("method", DEFAULT_METHOD)
            cal, per = calibrate_methods(
                len(ids), a, b, pairs["score"].to_numpy(), gold, CALIBRATED_METHODS, target_precision
            )
            out = Path(calibration_out) if calibration_out else gp.parent / "calibration.json"
            summary = {
                **cal.as_dict(),
                "run_method": used,
                "methods": {m: c.as_dict() for m, c in per.items()},
                "score_range": SCORE_RANGE,
            }
            write_json({**summary, "gold": str(gold_path)}, out)
            result["calibration"] = {**summary, "written_to": str(out)}
    elif do_calibrate:
        raise RunDirError(f"{pairs_path}: calibration needs the scored pairs written by `eclip dedupe`.")
    write_json(result, gp.parent / "eval.json")
    return result


def evaluate_links(path: str | Path, gold_path: str | Path) -> dict[str, Any]:
    """Score ``links.parquet`` (``eclip link``) against gold cross pairs; writes ``eval.json``
    beside it.

    The gold is a pairs file (``id_a, id_b`` or another layout of
    :data:`eclip.evaluation.gold.PAIR_COLUMNS`): one id of each side. Its orientation (which
    column holds LEFT's ids) is the one under which more gold ids exist; pairs naming an id
    that neither run side holds are left out and counted.

    Returns:
        ``{"task": "link", "metrics": {precision, recall, f1, links, gold_pairs,
        gold_pairs_in_candidates}, ...}``: pairwise P/R/F1 of the cross pairs.

    Raises:
        RunDirError: not a link run's links.parquet. GoldError: not a pairs file.
    """
    from eclip.catalog import given_dialect, read_table
    from eclip.evaluation.gold import load_gold_cross_pairs
    from eclip.evaluation.metrics import pair_set_prf

    p = Path(path)
    if not p.is_file() or not {"left_id", "right_id"} <= set(pl.read_parquet_schema(p)):
        raise RunDirError(f"{p}: not the links.parquet of an eclip link run.")
    links = pl.read_parquet(p)
    cand_path = p.parent / "candidates.parquet"
    cand = pl.read_parquet(cand_path, columns=["left_id", "right_id"]) if cand_path.exists() else links
    manifest = read_json(p.parent / MANIFEST)
    left_ids, right_ids = set(cand["left_id"]) | set(links["left_id"]), set(cand["right_id"]) | set(links["right_id"])
    for side, key in ((left_ids, "left"), (right_ids, "right")):
        inputs = manifest.get("inputs", {}).get(key) or {}
        if inputs.get("catalog") and Path(inputs["catalog"]).exists():
            table = read_table(Path(inputs["catalog"]), **given_dialect(inputs.get("dialect")))
            side |= set(table[inputs.get("id_col", "id")].cast(pl.String).to_list())
    gold, orientation, left_out = load_gold_cross_pairs(gold_path, left_ids, right_ids)
    pred = set(zip(links["left_id"].to_list(), links["right_id"].to_list()))
    precision, recall, f1 = pair_set_prf(pred, gold)
    in_cand = len(gold & set(zip(cand["left_id"].to_list(), cand["right_id"].to_list())))
    result = {
        "task": "link",
        "file": str(p),
        "gold": str(gold_path),
        "gold_orientation": orientation,
        "metrics": {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "links": len(pred),
            "gold_pairs": len(gold),
            "gold_pairs_left_out": left_out,
            "gold_pairs_in_candidates": round(in_cand / len(gold), 4),
        },
    }
    write_json(result, p.parent / "eval.json")
    return result
