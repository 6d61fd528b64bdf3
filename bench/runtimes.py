"""Benchmark the text runtimes on real titles: speed, agreement with PyTorch, and the F1 each
gives `eclip dedupe` on both dev catalogs, all measured in the same run.

Runtimes (``--runtimes``):

* ``torch-before``: the path before this work, the baseline every ratio is taken against:
  PyTorch (sentence-transformers' ``encode``) fed 64 titles at a time in catalog order, as
  ``eclip embed`` did;
* ``torch``: PyTorch fed a shard (4,096 titles) at a time, which it sorts by length into
  batches of 64 (what ``eclip embed`` does now);
* ``onnx``: the same tower exported to ONNX and run by ONNX Runtime, fp32, length-sorted
  batches, every core;
* ``onnx-int8``: ONNX Runtime's dynamic int8 (eclip refuses it when its mean cosine to fp32
  falls below 0.99; then the row says so);
* ``static``: ``minilm-static``, a model2vec static model distilled from the same MiniLM (a
  different vector space: no cosine to PyTorch, only F1);
* ``cascade``, ``cascade-int8``: ``--model minilm-static --cascade minilm`` (fp32 or int8
  ONNX): the static model scores every candidate, MiniLM only the rows of the pairs it left
  uncertain (quality part only: two models, no single speed).

Part 1, speed: the titles of WDC Products (10,000) are embedded once per runtime after a
warm-up; it prints titles/s, the ratio to torch-before, and the mean and minimum cosine of each title's
vector to PyTorch's. Model loading and exporting are timed apart (a one-time cost, cached).

Part 2, quality: ``eclip dedupe`` (defaults, no labels) on Abt-Buy and on WDC Products with each
runtime, scored by pairwise P/R/F1 and B-cubed F1 against the gold (WDC: ``product_id``), and
the F1 change against torch.

    uv run --frozen --extra cpu python bench/runtimes.py [--data ../shared/data] [--rows N] \
        [--runtimes torch-before,torch,onnx,onnx-int8,static,cascade-int8] [--no-dedupe | --no-speed]

With ``--no-speed`` the F1 baseline is the first of ``torch``/``onnx`` asked for (fp32).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table
from transfer import cpu_flags  # the transfer bench's CPU flags line

from eclip import api
from eclip.catalog import load_catalog
from eclip.encoders import load_encoder
from eclip.encoders.onnx import cores as usable_cores
from eclip.errors import ModelError
from eclip.evaluation import cluster_metrics, load_gold

SPECS = {
    "torch-before": ("minilm", "torch"),
    "torch": ("minilm", "torch"),
    "onnx": ("minilm", "onnx"),
    "onnx-int8": ("minilm", "onnx-int8"),
    "static": ("minilm-static", "auto"),
    "cascade": ("minilm-static", "onnx"),
    "cascade-int8": ("minilm-static", "onnx-int8"),
}
#: Runtimes that are a static first tier plus MiniLM on the uncertain pairs (``--cascade``).
CASCADES = ("cascade", "cascade-int8")
CATALOGS = {
    "abt_buy": ("abt_buy/catalog.csv", "abt_buy/matches.csv", None),
    "wdc_products": ("wdc_products/offers.csv", "wdc_products/offers.csv", "product_id"),
}


def speed(titles: list[str], runtimes: list[str], cache: Path, console: Console) -> dict[str, dict]:
    """titles/s and cosine to PyTorch of each runtime, on the same titles."""
    out: dict[str, dict] = {}
    ref = None
    for name in runtimes:
        spec, runtime = SPECS[name]
        t0 = time.perf_counter()
        enc = load_encoder(spec, runtime=runtime, cache_dir=cache, batch_size=64)
        load_s = time.perf_counter() - t0
        chunk = 64 if name == "torch-before" else 4096
        try:
            enc.encode(titles[:64])  # warm-up (and the int8 check, on these titles)
            t0 = time.perf_counter()
            vec = np.concatenate([enc.encode(titles[s : s + chunk]) for s in range(0, len(titles), chunk)])
            secs = time.perf_counter() - t0
        except ModelError as exc:
            out[name] = {"refused": str(exc), "load_s": load_s}
            console.print(f"[yellow]{name}: {exc}[/]")
            continue
        row = {"titles_per_s": len(titles) / secs, "seconds": secs, "load_s": load_s, "dim": int(vec.shape[1])}
        if ref is None:
            ref = vec
        if ref is not None and vec.shape == ref.shape and name != "static":
            cos = np.einsum("ij,ij->i", ref, vec)
            row |= {"cos_mean": float(cos.mean()), "cos_min": float(cos.min())}
        out[name] = row
        console.print(f"{name}: {row['titles_per_s']:.0f} titles/s (load {load_s:.1f} s)")
    return out


def quality(data: Path, runtimes: list[str], work: Path, console: Console) -> dict[str, dict]:
    """Default ``eclip dedupe`` on each dev catalog with each runtime, scored on the gold."""
    res: dict[str, dict] = {}
    for cat_name, (cat_rel, gold_rel, gold_col) in CATALOGS.items():
        cat = load_catalog(data / cat_rel)
        gold = load_gold(data / gold_rel, cat.ids, "id", gold_col, ())
        for name in runtimes:
            spec, runtime = SPECS[name]
            run = work / f"{cat_name}-{name}"
            try:
                cascade = "minilm" if name in CASCADES else None
                manifest = api.dedupe(
                    data / cat_rel, run, api.DedupeConfig(model=spec, runtime=runtime, cascade=cascade)
                )
            except ModelError as exc:
                res[f"{cat_name}/{name}"] = {"refused": str(exc)}
                continue
            labels = pl.read_parquet(run / "groups.parquet")["group_id"].to_numpy()
            m = cluster_metrics(labels, gold).as_dict()
            cascaded = manifest["matching"].get("cascade") or {}
            res[f"{cat_name}/{name}"] = {
                **{k: m[k] for k in ("precision", "recall", "f1", "bcubed_f1")},
                "embed_s": manifest["timings_s"].get("embed", 0.0) + manifest["timings_s"].get("cascade", 0.0),
                "total_s": manifest["timings_s"].get("total"),
                "refined_rows": cascaded.get("row_share"),
            }
            console.print(f"{cat_name} {name}: F1 {m['f1']:.4f}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--rows", type=int, default=10_000, help="WDC titles embedded in the speed part")
    ap.add_argument("--runtimes", default="torch-before,torch,onnx,onnx-int8,static")
    ap.add_argument("--no-dedupe", action="store_true", help="speed only")
    ap.add_argument("--no-speed", action="store_true", help="F1 only")
    args = ap.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]
    if unknown := [r for r in runtimes if r not in SPECS]:
        ap.error(f"unknown runtime(s) {unknown}; choose among {', '.join(SPECS)}")
    if not args.no_speed and runtimes[0] != "torch-before":
        ap.error("the first runtime must be torch-before: the baseline of every ratio")
    if args.no_speed and not {"torch", "onnx"} & set(runtimes):
        ap.error("--no-speed needs torch or onnx among --runtimes: the fp32 baseline of the F1 changes")
    console = Console(width=140)
    cores = usable_cores()
    console.print(f"{cores} cores, CPU flags {cpu_flags()}; ONNX Runtime and model2vec from the lock file")
    titles = load_catalog(args.data / "wdc_products/offers.csv").texts[: args.rows]
    with tempfile.TemporaryDirectory(prefix="eclip-bench-rt-") as tmp:
        timed = [r for r in runtimes if r not in CASCADES]
        fast = {} if args.no_speed else speed(titles, timed, Path(tmp) / "cache", console)
        qual = (
            {}
            if args.no_dedupe
            else quality(args.data, [r for r in runtimes if r != "torch-before"], Path(tmp), console)
        )

    if fast:
        speed_table(fast, len(titles), console)
    if qual:
        quality_table(qual, runtimes, console)


def speed_table(fast: dict[str, dict], rows: int, console: Console) -> None:
    base = fast["torch-before"]["titles_per_s"]
    t = Table(title=f"text runtimes: {rows:,} WDC titles (title + brand), batch 64, MiniLM-L6")
    for c in ("runtime", "titles/s", "x before", "cosine to PyTorch (mean / min)", "load + export s"):
        t.add_column(c, justify="left" if c == "runtime" else "right")
    for name, r in fast.items():
        if "refused" in r:
            t.add_row(name, "refused", "", r["refused"][:60], f"{r['load_s']:.1f}")
            continue
        cos = f"{r['cos_mean']:.5f} / {r['cos_min']:.4f}" if "cos_mean" in r else "(another space)"
        t.add_row(name, f"{r['titles_per_s']:,.0f}", f"{r['titles_per_s'] / base:.2f}x", cos, f"{r['load_s']:.1f}")
    console.print(t)


def quality_table(qual: dict[str, dict], runtimes: list[str], console: Console) -> None:
    base = next(r for r in ("torch", "onnx", *runtimes) if r in runtimes)
    q = Table(title="eclip dedupe, default settings, no labels: F1 per runtime")
    for c in ("catalog", "runtime", "P", "R", "F1", f"dF1 vs {base}", "B3 F1", "embed s", "total s", "refined rows"):
        q.add_column(c, justify="left" if c in ("catalog", "runtime") else "right")
    for key, r in qual.items():
        cat_name, name = key.split("/")
        if "refused" in r:
            q.add_row(cat_name, name, "refused", "", "", "", "", "", "", "")
            continue
        ref = qual.get(f"{cat_name}/{base}", {}).get("f1")
        q.add_row(
            cat_name,
            name,
            f"{r['precision']:.3f}",
            f"{r['recall']:.3f}",
            f"{r['f1']:.3f}",
            f"{r['f1'] - ref:+.3f}" if ref is not None else "",
            f"{r['bcubed_f1']:.3f}",
            f"{r['embed_s']:.1f}",
            f"{r['total_s']:.1f}",
            f"{r['refined_rows']:.1%}" if r.get("refined_rows") is not None else "",
        )
    console.print(q)


if __name__ == "__main__":
    main()
