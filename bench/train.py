"""Benchmark the `eclip train` step: cached locked text tower and feature-caching accumulation.

All variants train the same `--init minilm` model (MiniLM text tower, timm resnet18 image tower
from scratch at 64 px) on the same fashion rows for the same number of steps, in one run; the
rate is training pairs per second from the loop's own clock (evaluation excluded).

* locked text, features cached (default) vs locked text recomputed every step (no grad) vs
  unlocked text (forward and backward through MiniLM);
* contrastive batch 128 as one micro-batch vs 2 x 64 with open_clip-style accumulation
  (features cached, then recomputed with grad: same negatives, one extra image forward).

Quality next to speed: the zero-shot articleType top-1 on the validation split after the run
(short runs: compare, do not read as the model's final accuracy). Accumulation's no-grad
pass also updates BatchNorm running statistics (as in open_clip), so early in a run its
evaluation can differ for that reason alone.

    uv run --frozen --extra cpu python bench/train.py [--rows 1500] [--steps 30]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from eclip import api
from eclip.train import TrainConfig

VARIANTS = {
    "locked text, cached (default)": {},
    "locked text, recomputed each step": {"cache_text": False},
    "unlocked text (trained)": {"lock_text": False},
    "accumulation 2 x 64 (same 128 negatives)": {"batch_size": 64, "accum_freq": 2},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--rows", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eclip-bench-train-"))
    src = args.data / "fashion"
    pl.read_csv(src / "catalog.csv", infer_schema=False).head(args.rows).write_csv(work / "catalog.csv")
    rows = []
    for i, (name, over) in enumerate(VARIANTS.items()):
        out = work / f"v{i}"
        if i:  # share the decoded-image cache; each variant's own settings decide the rest
            (out / "cache").mkdir(parents=True)
            for f in ("images.npy", "has_image.npy", "phash.npy", "images.json"):
                shutil.copy(work / "v0" / "cache" / f, out / "cache" / f)
        cfg = TrainConfig(
            init="minilm",
            zeroshot_col="articleType",
            epochs=100,
            max_steps=args.steps,
            warmup_steps=2,
            **{"batch_size": 128, **over},
        )
        card = api.train(work / "catalog.csv", out, cfg, image_root=src)
        rows.append((name, card["training"]["pairs_per_s"], card["eval"][-1].get("zeroshot_top1", float("nan"))))
    base = rows[0][1]
    table = Table(title=f"eclip train step, {args.steps} steps of 128 pairs, {args.rows} fashion rows (CPU)")
    for col in ("variant", "pairs/s", "ratio vs default", "zero-shot top-1 after the run"):
        table.add_column(col, justify="right")
    for name, rate, acc in rows:
        table.add_row(name, f"{rate:.1f}", f"{rate / base:.2f}x", f"{acc:.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()
