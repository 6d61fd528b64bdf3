"""Benchmark `eclip embed` against the naive loop, on the same model, measured in the same run.

* eclip: ``api.embed`` — batched forward passes, images decoded and preprocessed in DataLoader
  workers, pHash of every image, sharded atomic writes.
* naive: one row at a time — ``Image.open`` -> open_clip preprocess -> ``encode_image`` on a
  batch of one, and ``tokenizer([title])`` -> ``encode_text``; no pHash, nothing written.

It prints images/s (image + title rows) and titles/s (text-only run) for both, their ratio, and
the agreement of the two pipelines' embeddings (mean cosine; 1.0 = the same vectors), so that
speed is never bought with different output.

The model is an open_clip architecture with random weights built here (``--arch``, default a
ViT-B-32-shaped model reduced to 6 layers so the run fits a 2-core box), or any ``--model`` spec.

    uv run --frozen --extra cpu python bench/embed.py [--rows 512] [--model SPEC] [--workers N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from eclip import api
from eclip.encoders import EmbedSettings, load_embeddings, load_encoder
from eclip.encoders.clip import create_model_dir

BENCH_CFG = {
    "embed_dim": 512,
    "vision_cfg": {"image_size": 224, "layers": 6, "width": 768, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 6},
}


def naive(model_spec: str, titles: list[str], paths: list[Path]) -> tuple[float, float, np.ndarray, np.ndarray]:
    enc = load_encoder(model_spec, device="cpu")
    model, tok, pre = enc.model, enc.tokenizer, enc.image_transform
    img_out, txt_out = [], []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p, t in zip(paths, titles):
            x = pre(Image.open(p).convert("RGB"))[None]
            img_out.append(torch.nn.functional.normalize(model.encode_image(x), dim=-1)[0].numpy())
            txt_out.append(torch.nn.functional.normalize(model.encode_text(tok([t])), dim=-1)[0].numpy())
    t_img = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for t in titles:
            torch.nn.functional.normalize(model.encode_text(tok([t])), dim=-1)
    t_txt = time.perf_counter() - t0
    return len(paths) / t_img, len(titles) / t_txt, np.stack(img_out), np.stack(txt_out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--model", default=None, help="model spec; default: a random-weight ViT built from BENCH_CFG")
    ap.add_argument("--workers", type=int, default=-1)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="eclip-bench-embed-"))
    spec = args.model or str(create_model_dir(BENCH_CFG, work / "model"))
    src = args.data / "fashion"
    cat = pl.read_csv(src / "catalog.csv", infer_schema=False).head(args.rows)
    cat.write_csv(work / "catalog.csv")
    titles = cat["title"].to_list()
    paths = [src / p for p in cat["image"].to_list()]
    torch.set_num_threads(torch.get_num_threads())

    settings = EmbedSettings(batch_size=args.batch_size, workers=args.workers)
    t0 = time.perf_counter()
    load_encoder(spec, device="cpu")  # warm the imports, so neither side pays them
    t_load = time.perf_counter() - t0
    # eclip's rates use the job's own clock (manifest "seconds"): the embedding loop, DataLoader
    # start-up and shard writes included; the model load excluded, as for the naive loop
    m_img = api.embed(
        work / "catalog.csv",
        work / "img",
        api.EmbedConfig(model=spec, image_col="image", image_root=src, settings=settings),
    )
    m_txt = api.embed(work / "catalog.csv", work / "txt", api.EmbedConfig(model=spec, settings=settings))
    t_img, t_txt = m_img["seconds"], m_txt["seconds"]
    e_img, e_txt = len(paths) / t_img, len(titles) / t_txt

    n_img, n_txt, nv_img, nv_txt = naive(spec, titles, paths)
    emb = load_embeddings(work / "img")
    agree_img = float(np.mean(np.sum(emb.image * nv_img, axis=1)))
    agree_txt = float(np.mean(np.sum(emb.text * nv_txt, axis=1)))

    table = Table(
        title=f"eclip embed vs naive loop — {len(paths)} fashion rows, model {Path(spec).name if not args.model else spec}, {torch.get_num_threads()} threads"
    )
    for col in ("pipeline", "images/s (image+title rows)", "titles/s", "agreement (mean cos vs naive)"):
        table.add_column(col, justify="right")
    table.add_row("naive loop (1 row at a time)", f"{n_img:.1f}", f"{n_txt:.1f}", "1.0000 / 1.0000")
    table.add_row(
        "eclip embed (batched, DataLoader, + pHash)",
        f"{e_img:.1f}",
        f"{e_txt:.1f}",
        f"{agree_img:.4f} / {agree_txt:.4f}",
    )
    table.add_row("ratio eclip / naive", f"{e_img / n_img:.2f}x", f"{e_txt / n_txt:.2f}x", "")
    console.print(table)
    console.print(
        f"first model load (imports) {t_load:.1f} s, excluded from both sides; eclip job time: images {t_img:.1f} s, titles {t_txt:.1f} s; work dir {work}"
    )


if __name__ == "__main__":
    main()
