"""Benchmark `--ray` against the single process, in one run, on this machine.

The catalog is the scale benchmark's (``bench/scale.py``: synthetic listings built from the
real titles in ``../shared/data``, known groups, near-twins), cut to ``--rows`` whole groups
(default 200,000 of the 1,000,000-row catalog). Each configuration runs the CLI as a
subprocess with a cold run directory:

* ``eclip dedupe SUBSET --model minilm-static ...``: the single process (the baseline), then
  ``--ray --ray-workers W`` for each W of ``--workers`` (default 1,2), each starting its own
  local Ray instance (its start-up is in the wall time, not in the stages);
* ``eclip index build`` over the baseline's embeddings with an IVF-PQ factory, single process
  and ``--ray --ray-workers W``.

It prints, per configuration, every stage's seconds and rows/s from the manifest
(``timings_s``) and its ratio to the single process's same stage (``x single``: above 1 is
slower), the wall time with its ratio, and quality: pairwise and B-cubed F1 against the known
groups and whether ``groups.parquet`` equals the single process's; for the index, recall@10
as tuned and whether the search results equal the single build's.

On a 2-core machine, Ray's workers share the driver's cores: this measures Ray's overhead
(actor start-up, model loads per actor, object-store copies), not a speed-up, which needs
more cores or machines.

    uv run --extra ray python bench/ray.py [--rows 200000] [--workers 1,2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale  # noqa: E402  (bench/scale.py: the catalog and the child-process runner)

DEDUPE_ARGS = [
    "--model",
    "minilm-static",
    "--id-col",
    "id",
    "--text-cols",
    "title",
    "--brand-col",
    "brand",
    "--price-col",
    "price",
]
STAGES = ("embed", "search", "candidates", "score", "learn", "group", "write")


def _dedupe(catalog: Path, out: Path, log: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    res = scale.run_child(
        [*scale.eclip_cmd(), "dedupe", str(catalog), "--out", str(out), *DEDUPE_ARGS, *extra], log, None
    )
    if res["rc"] != 0:
        raise SystemExit(f"{out.name} failed (rc {res['rc']}); see {log}")
    return {**res, "manifest": json.loads((out / "manifest.json").read_text())}


def _index(emb: Path, out: Path, log: Path, factory: str, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    res = scale.run_child(
        [*scale.eclip_cmd(), "index", "build", str(emb), "--out", str(out), "--factory", factory, *extra], log, None
    )
    if res["rc"] != 0:
        raise SystemExit(f"{out.name} failed (rc {res['rc']}); see {log}")
    return {**res, "manifest": json.loads((out / "manifest.json").read_text())}


def _same_search(a: Path, b: Path, emb: Path, queries: int = 2000) -> float:
    """Share of identical top-10 ids over ``queries`` rows searched in both indexes."""
    from eclip.encoders import load_embeddings
    from eclip.index import open_index_dir

    x = load_embeddings(emb).text[:queries]
    _, ia = open_index_dir(a).search(x, 10)
    _, ib = open_index_dir(b).search(x, 10)
    return float((ia == ib).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument(
        "--full-rows", type=int, default=1_000_000, help="rows of the scale benchmark's catalog the subset is cut from"
    )
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts")
    ap.add_argument("--factory", default="IVF1024,PQ32", help="faiss factory of the index build comparison")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "eclip-bench-scale")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    console = Console(width=150)
    args.work.mkdir(parents=True, exist_ok=True)
    full, _ = scale.ensure_catalog(args.work, args.full_rows, 0, args.data, console)
    subset = scale.ensure_subset(full, args.rows) if args.rows < args.full_rows else full
    n = pl.scan_parquet(subset).select(pl.len()).collect().item()
    console.print(f"catalog {subset} ({n:,} rows); machine: {scale.cpu_model()}")
    runs = args.work / "ray-bench"
    runs.mkdir(exist_ok=True)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]

    dedupe_rows: dict[str, dict] = {}
    for name, extra in [("single", [])] + [(f"ray-{w}", ["--ray", "local", "--ray-workers", str(w)]) for w in workers]:
        console.print(f"[bold]dedupe {name}[/]")
        t0 = time.perf_counter()
        res = _dedupe(subset, runs / f"dedupe-{name}", runs / f"dedupe-{name}.log", extra)
        res["quality"] = scale.evaluate(subset, runs / f"dedupe-{name}")
        res["same_groups"] = name == "single" or pl.read_parquet(runs / f"dedupe-{name}" / "groups.parquet").equals(
            pl.read_parquet(runs / "dedupe-single" / "groups.parquet")
        )
        console.print(f"  {time.perf_counter() - t0:.0f} s")
        dedupe_rows[name] = res

    base = dedupe_rows["single"]["manifest"]["timings_s"]
    table = Table(title=f"eclip dedupe, {n:,} rows (minilm-static): seconds (rows/s) and x single")
    table.add_column("stage")
    for name in dedupe_rows:
        table.add_column(name, justify="right")
    for stage in (*STAGES, "total"):
        cells = []
        for name, res in dedupe_rows.items():
            sec = res["manifest"]["timings_s"].get(stage)
            if sec is None:
                cells.append("-")
                continue
            ratio = f" {sec / base[stage]:.2f}x" if name != "single" and base.get(stage) else ""
            cells.append(f"{sec:.1f} s ({n / sec:,.0f}/s){ratio}" if sec > 0 else "0 s")
        table.add_row(stage, *cells)
    wall0 = dedupe_rows["single"]["wall_s"]
    table.add_row(
        "wall (Ray start incl.)",
        *[
            f"{r['wall_s']:.0f} s" + (f" {r['wall_s'] / wall0:.2f}x" if k != "single" else "")
            for k, r in dedupe_rows.items()
        ],
    )
    table.add_row(
        "pairwise F1 / B-cubed F1",
        *[f"{r['quality']['f1']:.4f} / {r['quality']['bcubed_f1']:.4f}" for r in dedupe_rows.values()],
    )
    table.add_row("groups.parquet = single", *[str(r["same_groups"]) for r in dedupe_rows.values()])
    table.add_row("peak RSS of the CLI (GiB)", *[f"{r['peak_rss_gib']:.2f}" for r in dedupe_rows.values()])
    console.print(table)

    emb = runs / "dedupe-single" / "embeddings"
    index_rows: dict[str, dict] = {}
    for name, extra in [("single", [])] + [(f"ray-{w}", ["--ray", "local", "--ray-workers", str(w)]) for w in workers]:
        console.print(f"[bold]index build {name}[/]")
        index_rows[name] = _index(emb, runs / f"index-{name}", runs / f"index-{name}.log", args.factory, extra)
    t = Table(title=f"eclip index build, {n:,} vectors, {args.factory}")
    for col in ("run", "wall (Ray start incl.)", "x single", "recall@10", "same top-10 as single"):
        t.add_column(col, justify="right")
    for name, res in index_rows.items():
        m = res["manifest"]
        same = 1.0 if name == "single" else _same_search(runs / "index-single", runs / f"index-{name}", emb)
        t.add_row(
            name,
            f"{res['wall_s']:.0f} s",
            f"{res['wall_s'] / index_rows['single']['wall_s']:.2f}x",
            f"{m.get('recall@10')}",
            f"{same:.4f}",
        )
    console.print(t)
    if args.json:

        def slim(d):
            return {
                k: {kk: vv for kk, vv in v.items() if kk != "manifest"} | {"timings_s": v["manifest"].get("timings_s")}
                for k, v in d.items()
            }

        args.json.write_text(
            json.dumps({"rows": n, "dedupe": slim(dedupe_rows), "index": slim(index_rows)}, indent=1, default=float)
        )


if __name__ == "__main__":
    main()
