"""Do eclip's label-free defaults transfer? ``eclip dedupe`` (and ``eclip link`` where the
gold is cross-source) with default settings on every dev catalog, beside a TF-IDF baseline
measured in the same run, with every numeric default chosen leave-one-catalog-out.

Catalogs: the six labelled-pair sets of ``../shared/data/pair_sets`` (test split), Abt-Buy,
WDC Products (gold ``product_id``) and the non-English catalogs under ``bench/data/``.

Scoring (as ``../shared/data/README.md`` says): on a pair set, a labelled pair counts as
predicted a match when both rows share a group (or are linked); unlabelled pairs are
unknown. On a catalog with full gold, pairwise precision / recall / F1 over all row pairs.

Leave-one-out: each default that is a number is a grid here (:data:`GRID`). For each
catalog, the grid point with the best mean F1 over the *other* catalogs is chosen, and its
F1 on the held-out catalog is what the table prints ("default F1, LOO"). The TF-IDF
baseline's threshold is chosen the same way (and its hindsight-best F1 is printed too).

``--self-train`` adds ``eclip dedupe --self-train`` with today's defaults per catalog (the text
encoder fine-tuned on the first pass's certain matches; no labels).

    uv run python bench/transfer.py [--data ../shared/data] [--work /tmp/eclip-transfer] [--only beer,abt_buy]
        [--defaults-only] [--self-train]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console

from eclip import api
from eclip.catalog import load_catalog
from eclip.encoders import CharNgramTfidf
from eclip.evaluation import load_gold
from eclip.evaluation.metrics import pairwise_counts, pairwise_prf
from eclip.matcher.candidates import tfidf_knn
from eclip.matcher.signals import ScoreWeights

console = Console(width=150)
HERE = Path(__file__).resolve().parent


@dataclass
class Catalog:
    """One dev catalog: where its rows are, which columns hold its text, and its gold."""

    name: str
    path: Path
    text_cols: list[str] | None
    #: labelled pairs (id_a, id_b, label) of a pair set, or None when gold is per row
    pairs: pl.DataFrame | None = None
    #: per-row gold product ids, when the catalog has full gold
    gold: dict[str, int] | None = None
    #: ids of each source, for link (left, right)
    sides: tuple[set[str], set[str]] | None = None
    language: str = "en"


def _pair_set(data: Path, name: str, text_cols: list[str] | None) -> Catalog:
    folder = data / "pair_sets" / name
    pairs = pl.read_csv(folder / "pairs.csv", infer_schema=False).filter(pl.col("split") == "test")
    pairs = pairs.with_columns(pl.col("label").cast(pl.Int8))
    all_pairs = pl.read_csv(folder / "pairs.csv", infer_schema=False)
    left, right = set(all_pairs["id_a"]), set(all_pairs["id_b"])
    sides = (left, right) if not (left & right) else None
    return Catalog(name, folder / "catalog.csv", text_cols, pairs=pairs, sides=sides)


def _gold(path: Path, ids: list[str], cluster_col: str | None = None) -> dict[str, int]:
    """Gold product per row (:func:`eclip.evaluation.load_gold`: a pairs file's connected
    components, or a cluster column)."""
    return dict(zip(ids, load_gold(path, ids, cluster_col=cluster_col).tolist()))


def catalogs(data: Path) -> list[Catalog]:
    """Every dev catalog that is present."""
    out = [
        _pair_set(data, "wdc_computers", None),
        _pair_set(data, "wdc_cameras", None),
        _pair_set(data, "wdc_watches", None),
        _pair_set(data, "wdc_shoes", None),
        _pair_set(data, "beer", ["Beer_Name", "Brew_Factory_Name", "Style", "ABV"]),
        _pair_set(data, "itunes_amazon", ["Song_Name", "Artist_Name", "Album_Name", "Genre", "Price", "Time"]),
    ]
    ab = pl.read_csv(data / "abt_buy" / "catalog.csv", infer_schema=False)
    ids = ab["id"].to_list()
    is_abt = {x for x in ids if int(x) < 1_000_000}
    out.append(
        Catalog(
            "abt_buy",
            data / "abt_buy" / "catalog.csv",
            None,
            gold=_gold(data / "abt_buy" / "matches.csv", ids),
            sides=(is_abt, set(ids) - is_abt),
        )
    )
    offers = data / "wdc_products" / "offers.csv"
    wdc_ids = pl.read_csv(offers, infer_schema=False, columns=["id"])["id"].to_list()
    out.append(Catalog("wdc_products", offers, None, gold=_gold(offers, wdc_ids, "product_id")))
    for folder in sorted((HERE / "data").glob("*/")):
        meta = json.loads((folder / "bench.json").read_text()) if (folder / "bench.json").is_file() else {}
        cat = pl.read_csv(folder / "catalog.csv", infer_schema=False)
        ids = cat["id"].to_list()
        if "product_id" in cat.columns:
            gold = _gold(folder / "catalog.csv", ids, "product_id")
        else:
            gold = _gold(folder / "matches.csv", ids)
        out.append(
            Catalog(
                folder.name,
                folder / "catalog.csv",
                meta.get("text_cols"),
                gold=gold,
                language=meta.get("language", "?"),
            )
        )
    return out


def prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def score_groups(cat: Catalog, group_of: dict[str, Any]) -> tuple[float, float, float]:
    """Pairwise P / R / F1 of a grouping (id -> group) against the catalog's gold."""
    if cat.pairs is not None:
        same = np.array([group_of[x] == group_of[y] for x, y in zip(cat.pairs["id_a"], cat.pairs["id_b"])])
        y = cat.pairs["label"].to_numpy() == 1
        return prf(int((same & y).sum()), int(same.sum()), int(y.sum()))
    assert cat.gold is not None
    ids = list(cat.gold)
    pred = np.unique(np.array([str(group_of[x]) for x in ids], dtype=object), return_inverse=True)[1]
    return pairwise_prf(pred, np.array([cat.gold[x] for x in ids]))


def score_pair_list(cat: Catalog, a: list[str], b: list[str]) -> tuple[float, float, float]:
    """Pairwise P / R / F1 of predicted matching pairs (no transitivity)."""
    pred = {(x, y) if x < y else (y, x) for x, y in zip(a, b)}
    if cat.pairs is not None:
        y = cat.pairs["label"].to_numpy() == 1
        hit = np.array([((x, z) if x < z else (z, x)) in pred for x, z in zip(cat.pairs["id_a"], cat.pairs["id_b"])])
        return prf(int((hit & y).sum()), int(hit.sum()), int(y.sum()))
    assert cat.gold is not None
    tp = sum(cat.gold[x] == cat.gold[y] for x, y in pred)
    _, gold_pairs, _ = pairwise_counts(np.zeros(len(cat.gold), np.int64), np.array(list(cat.gold.values())))
    return prf(tp, len(pred), gold_pairs)


def tfidf_candidates(cat: Catalog, k: int = 10) -> tuple[list[str], list[str], np.ndarray]:
    """The TF-IDF baseline's candidate pairs: each row's k nearest by char 3-5-gram TF-IDF
    cosine (exact sparse top-k, :func:`eclip.matcher.candidates.tfidf_knn`), each unordered
    pair once, with its cosine."""
    c = load_catalog(cat.path, "id", cat.text_cols)
    x = CharNgramTfidf().fit_transform(c.texts)
    a, b, _ = tfidf_knn(x, np.arange(x.shape[0]), k)
    cos = np.asarray(x[a].multiply(x[b]).sum(axis=1)).ravel().astype(np.float32)
    ids = np.array(c.ids, dtype=object)
    return ids[a].tolist(), ids[b].tolist(), cos


#: The TF-IDF baseline's thresholds (cosine; pairs at or above are matches).
TFIDF_GRID = tuple(round(t, 2) for t in np.arange(0.3, 0.96, 0.05))


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
        ).split()
    except (OSError, StopIteration):
        return platform.processor() or "?"
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16") if f in flags) or "no avx2"


def run_dedupe(cat: Catalog, work: Path, settings: dict[str, Any]) -> tuple[dict, dict[str, Any], float]:
    """``eclip dedupe`` with default settings (plus ``settings``); embeddings cached per catalog."""
    emb = work / cat.name / "embeddings"
    tag = "-".join(f"{k}={v}" for k, v in sorted(settings.items())) or "default"
    out = work / cat.name / f"dedupe-{tag}"
    settings = dict(settings)
    weights = ScoreWeights(**{"quantity": settings.pop("quantity_weight")} if "quantity_weight" in settings else {})
    cfg = api.DedupeConfig(text_cols=cat.text_cols, weights=weights, **settings)
    if (emb / "manifest.json").is_file():
        cfg.embeddings = emb
    else:
        cfg.cache_dir = emb
    t0 = time.perf_counter()
    manifest = api.dedupe(cat.path, out, cfg)
    secs = time.perf_counter() - t0
    groups = pl.read_parquet(out / "groups.parquet", columns=["id", "group_id"])
    pairs = pl.read_parquet(out / "pairs.parquet", columns=["id_a", "id_b"])
    manifest["candidate_recall"] = candidate_recall(cat, pairs["id_a"].to_list(), pairs["id_b"].to_list())
    return manifest, dict(zip(groups["id"], groups["group_id"])), secs


def run_self_trained(cat: Catalog, work: Path) -> tuple[float, float, float, float]:
    """``eclip dedupe --self-train`` with today's defaults (the first pass embeds afresh, into
    its own run directory): P, R, F1 and seconds."""
    out = work / cat.name / "self-train"
    t0 = time.perf_counter()
    api.dedupe_self_trained(cat.path, out, api.DedupeConfig(text_cols=cat.text_cols))
    secs = time.perf_counter() - t0
    groups = pl.read_parquet(out / "groups.parquet", columns=["id", "group_id"])
    return (*score_groups(cat, dict(zip(groups["id"], groups["group_id"]))), secs)


def candidate_recall(cat: Catalog, a: list[str], b: list[str]) -> float:
    """Share of the gold's matching pairs (a pair set's labelled matches) that are candidates."""
    return score_pair_list(cat, a, b)[1]


def run_link(cat: Catalog, work: Path, settings: dict[str, Any]) -> tuple[dict, tuple[float, float, float]]:
    """``eclip link`` of the catalog's two sources (left = the first source)."""
    assert cat.sides is not None
    folder = work / cat.name
    table = pl.read_csv(cat.path, infer_schema=False)
    left, right = folder / "left.csv", folder / "right.csv"
    if not left.is_file():
        table.filter(pl.col("id").is_in(list(cat.sides[0]))).write_csv(left)
        table.filter(pl.col("id").is_in(list(cat.sides[1]))).write_csv(right)
    tag = "-".join(f"{k}={v}" for k, v in sorted(settings.items())) or "default"
    out = folder / f"link-{tag}"
    cfg = api.LinkConfig(left_text_cols=cat.text_cols, **settings)
    first = folder / "link-default" / "embeddings"
    if (first / "right" / "manifest.json").is_file():
        cfg.left_embeddings, cfg.right_embeddings = first / "left", first / "right"
    manifest = api.link(left, right, out, cfg)
    links = pl.read_parquet(out / "links.parquet", columns=["left_id", "right_id"])
    return manifest, score_pair_list(cat, links["left_id"].to_list(), links["right_id"].to_list())


def loo_choice(scores: dict[str, dict[Any, float]], held_out: str) -> Any:
    """The grid point with the best mean F1 over every catalog but ``held_out``."""
    points = next(iter(scores.values())).keys()
    others = [c for c in scores if c != held_out]
    return max(points, key=lambda p: (np.mean([scores[c][p] for c in others]), str(p)))


#: Numeric defaults of the label-free matcher, each a grid chosen leave-one-catalog-out:
#: ``{}`` is today's default. Extend with {"field": [values]} entries of DedupeConfig.
GRID: dict[str, list[Any]] = {
    "min_match_score": [0.6, 0.65, 0.7],  # eclip.matcher.mixture.MIN_MATCH_SCORE
    "auto_group_share": [0.3, 0.45, 0.6],  # eclip.matcher.grouping.AUTO_GROUP_SHARE
    "quantity_weight": [0.2, 0.5, 0.8],  # eclip.matcher.signals.ScoreWeights.quantity
}


def today() -> dict[str, Any]:
    """Today's value of every numeric default in :data:`GRID`."""
    from eclip.matcher.grouping import AUTO_GROUP_SHARE
    from eclip.matcher.mixture import MIN_MATCH_SCORE

    return {
        "auto_group_share": AUTO_GROUP_SHARE,
        "min_match_score": MIN_MATCH_SCORE,
        "quantity_weight": ScoreWeights().quantity,
    }


def grid_points() -> list[dict[str, Any]]:
    grid = GRID or {k: [v] for k, v in today().items()}
    keys = sorted(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/eclip-transfer"))
    ap.add_argument("--only", default="", help="comma-separated catalog names")
    ap.add_argument("--no-link", action="store_true")
    ap.add_argument("--defaults-only", action="store_true", help="no grid: today's defaults only (no LOO choice)")
    ap.add_argument(
        "--self-train", action="store_true", help="also dedupe --self-train with today's defaults (minutes per catalog)"
    )
    args = ap.parse_args()
    if args.defaults_only:
        GRID.clear()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cats = [c for c in catalogs(args.data) if not args.only or c.name in args.only.split(",")]
    points = grid_points()
    dedupe_f1: dict[str, dict[Any, float]] = {}
    detail: dict[str, dict[str, Any]] = {}
    for cat in cats:
        (args.work / cat.name).mkdir(parents=True, exist_ok=True)
        dedupe_f1[cat.name] = {}
        for point in points:
            manifest, groups, secs = run_dedupe(cat, args.work, point)
            p, r, f = score_groups(cat, groups)
            key = json.dumps(point, sort_keys=True)
            dedupe_f1[cat.name][key] = f
            learned = manifest["matching"]["learned"]
            detail.setdefault(cat.name, {})[key] = {
                "p": p,
                "r": r,
                "f1": f,
                "secs": secs,
                "rows": manifest["counts"]["rows"],
                "method": manifest["matching"]["method_used"],
                "expected_per_row": learned.get("expected_matches_per_row"),
                "predicted_per_row": manifest["counts"]["predicted_matches_per_row"],
                "candidate_recall": manifest["candidate_recall"],
            }
            console.print(f"{cat.name} {key}: P {p:.3f} R {r:.3f} F1 {f:.3f} ({secs:.0f} s)")
    self_f1: dict[str, tuple[float, float, float, float]] = {}
    if args.self_train:
        for cat in cats:
            self_f1[cat.name] = run_self_trained(cat, args.work)
            p, r, f, secs = self_f1[cat.name]
            console.print(f"{cat.name} --self-train: P {p:.3f} R {r:.3f} F1 {f:.3f} ({secs:.0f} s)")
    # TF-IDF baseline
    base_f1: dict[str, dict[Any, float]] = {}
    for cat in cats:
        a, b, cos = tfidf_candidates(cat)
        base_f1[cat.name] = {}
        for t in TFIDF_GRID:
            keep = cos >= t
            base_f1[cat.name][t] = score_pair_list(
                cat, [x for x, k in zip(a, keep) if k], [y for y, k in zip(b, keep) if k]
            )[2]
    link_f1: dict[str, float] = {}
    if not args.no_link:
        for cat in cats:
            if cat.sides is not None:
                _, (p, r, f) = run_link(cat, args.work, {})
                link_f1[cat.name] = f
    default_key = json.dumps(today(), sort_keys=True)
    print(f"Label-free defaults, leave-one-catalog-out (CPU flags: {cpu_flags()})")
    head = (
        "catalog",
        "rows",
        "lang",
        "default F1 (LOO)",
        "P",
        "R",
        "chosen LOO",
        "F1 at today's default",
        "method",
        "cand. recall",
        "exp./row",
        "pred./row",
        "TF-IDF (LOO t)",
        "TF-IDF best t",
        "link F1",
        "--self-train F1 (s)",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cat in cats:
        choice = loo_choice(dedupe_f1, cat.name) if len(cats) > 1 else next(iter(dedupe_f1[cat.name]))
        d = detail[cat.name][choice]
        t = loo_choice(base_f1, cat.name) if len(cats) > 1 else max(base_f1[cat.name], key=base_f1[cat.name].get)
        cells = (
            cat.name,
            f"{d['rows']:,}",
            cat.language,
            f"**{d['f1']:.3f}**",
            f"{d['p']:.3f}",
            f"{d['r']:.3f}",
            " ".join(f"{k.split('_')[0]} {v}" for k, v in json.loads(choice).items()) or "default",
            f"{dedupe_f1[cat.name].get(default_key, float('nan')):.3f}",
            d["method"],
            f"{d['candidate_recall']:.3f}",
            "-" if d["expected_per_row"] is None else f"{d['expected_per_row']:.2f}",
            f"{d['predicted_per_row']:.2f}",
            f"{base_f1[cat.name][t]:.3f} (t {t})",
            f"{max(base_f1[cat.name].values()):.3f}",
            f"{link_f1[cat.name]:.3f}" if cat.name in link_f1 else "-",
            f"{self_f1[cat.name][2]:.3f} ({self_f1[cat.name][3]:.0f})" if cat.name in self_f1 else "-",
        )
        print("| " + " | ".join(cells) + " |")
    loo = [detail[c.name][loo_choice(dedupe_f1, c.name)]["f1"] for c in cats] if len(cats) > 1 else []
    if loo:
        what = "LOO" if len(grid_points()) > 1 else "no grid: today's default, in sample"
        console.print(f"mean default F1 ({what}) over {len(cats)} catalogs: {np.mean(loo):.3f}")
    totals = {k: float(np.mean([dedupe_f1[c.name][k] for c in cats])) for k in dedupe_f1[cats[0].name]}
    best = max(totals, key=lambda k: totals[k])
    console.print(f"grid point with the best mean F1 over all catalogs: {best} ({totals[best]:.3f})")
    console.print(f"today's default {default_key}: mean F1 {totals.get(default_key, float('nan')):.3f}")


if __name__ == "__main__":
    main()
