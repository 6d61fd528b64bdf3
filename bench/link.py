"""Benchmark `eclip link` on Abt-Buy split back into its two shops (Abt ids below 1,000,000,
Buy ids above), against `matches.csv`, in one run:

* every ``--mode`` of ``eclip link`` (default settings), and the greedy mutual-best variant
  of one-to-one on the same candidates, for comparison with the exact assignment;
* the baseline: ``eclip dedupe`` on the union of the two shops, its groups' pairs scored on
  the cross-source pairs (and how many of its pairs were inside one shop).

Pairwise precision, recall and F1 of the cross pairs, with seconds per run.

    uv run python bench/link.py [--data ../shared/data] [--work /tmp/eclip-bench-link]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from eclip import api
from eclip.evaluation.metrics import pair_set_prf
from eclip.matcher.assignment import mutual_best

console = Console(width=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/eclip-bench-link"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    catalog = pl.read_csv(args.data / "abt_buy" / "catalog.csv", infer_schema=False)
    is_abt = pl.col("id").cast(pl.Int64) < 1_000_000
    catalog.filter(is_abt).write_csv(args.work / "abt.csv")
    catalog.filter(~is_abt).write_csv(args.work / "buy.csv")
    g = pl.read_csv(args.data / "abt_buy" / "matches.csv", infer_schema=False)
    gold = set(zip(g["id_a"], g["id_b"]))  # id_a is always Abt's
    abt_ids = set(catalog.filter(is_abt)["id"].to_list())

    rows = []
    first = args.work / "link_one-to-one"
    for mode in ("one-to-one", "one-to-many", "many-to-many"):
        out = args.work / f"link_{mode}"
        cfg = api.LinkConfig(mode=mode)
        if mode != "one-to-one":
            cfg.left_embeddings, cfg.right_embeddings = first / "embeddings" / "left", first / "embeddings" / "right"
        t0 = time.perf_counter()
        m = api.link(args.work / "abt.csv", args.work / "buy.csv", out, cfg)
        secs = time.perf_counter() - t0
        links = pl.read_parquet(out / "links.parquet")
        rows.append(
            (
                f"eclip link --mode {mode}",
                pair_set_prf(set(zip(links["left_id"], links["right_id"])), gold),
                len(links),
                0,
                secs,
            )
        )
        if mode == "one-to-one":
            manifest_threshold = m["matching"]["threshold"]
            cand = pl.read_parquet(out / "candidates.parquet")
            lpos = {x: i for i, x in enumerate(pl.read_csv(args.work / "abt.csv", infer_schema=False)["id"].to_list())}
            rpos = {x: i for i, x in enumerate(pl.read_csv(args.work / "buy.csv", infer_schema=False)["id"].to_list())}
            on = cand["match_probability"].fill_null(0).to_numpy()
            sel = on >= manifest_threshold
            l = np.array([lpos[x] for x in cand["left_id"].to_list()])[sel]
            r = np.array([rpos[x] for x in cand["right_id"].to_list()])[sel]
            keep = mutual_best(len(lpos), len(rpos), l, r, on[sel])
            pairs = set(
                zip(cand["left_id"].to_numpy()[sel][keep].tolist(), cand["right_id"].to_numpy()[sel][keep].tolist())
            )
            rows.append(
                ("one-to-one, greedy mutual best instead", pair_set_prf(pairs, gold), len(pairs), 0, float("nan"))
            )

    union = args.work / "dedupe_union"
    t0 = time.perf_counter()
    api.dedupe(args.data / "abt_buy" / "catalog.csv", union)
    secs = time.perf_counter() - t0
    groups = pl.read_parquet(union / "groups.parquet")
    members = groups.group_by("group_id").agg("id").filter(pl.col("id").list.len() > 1)["id"].to_list()
    cross, inside = set(), 0
    for ids in members:
        for i, x in enumerate(ids):
            for y in ids[i + 1 :]:
                if (x in abt_ids) != (y in abt_ids):
                    cross.add((x, y) if x in abt_ids else (y, x))
                else:
                    inside += 1
    rows.append(("eclip dedupe on the union (cross pairs)", pair_set_prf(cross, gold), len(cross), inside, secs))

    table = Table(title="Abt-Buy as two shops (1,081 Abt x 1,080 Buy): cross-pair P/R/F1 against matches.csv")
    for c in ("run", "P", "R", "F1", "F1 / dedupe union", "links", "same-shop pairs", "s"):
        table.add_column(c, justify="left" if c == "run" else "right")
    base = rows[-1][1][2]
    for name, (p, r, f), n, inside_, s in rows:
        table.add_row(
            name,
            f"{p:.3f}",
            f"{r:.3f}",
            f"{f:.3f}",
            f"{f / base:.2f}x",
            f"{n:,}",
            f"{inside_:,}",
            "-" if np.isnan(s) else f"{s:.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
