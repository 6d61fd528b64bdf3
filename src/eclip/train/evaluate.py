"""Evaluation during training, on the validation split.

* **Retrieval**: image->text and text->image recall@1/5 among the validation rows (the
  paired title / image is the one relevant item), as in CLIP's Flickr/COCO evaluation.
* **Zero-shot classification** (CLIP, Radford et al. 2021, sec. 3.1.2): each class name of
  ``zeroshot_col`` is embedded as a prompt; an image is assigned the class whose prompt
  embedding is nearest. Reports top-1 accuracy over validation images.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from eclip.catalog import Catalog
from eclip.progress import console
from eclip.train.augment import normalise_pixels


@torch.inference_mode()
def _encode_images(
    model: Any, pixels: np.ndarray, rows: np.ndarray, normalise: Callable, device: str, batch: int = 256
) -> torch.Tensor:
    out = []
    for s in range(0, len(rows), batch):
        x = normalise(pixels[rows[s : s + batch]]).to(device)
        out.append(torch.nn.functional.normalize(model.encode_image(x).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


@torch.inference_mode()
def encode_texts(
    model: Any, tokenizer: Any, texts: list[str], device: str, batch: int = 256, label: str | None = None
) -> torch.Tensor:
    """Text-tower features of ``texts``: ``(n, d)`` float32, L2-normalised, on the CPU.

    With ``label``, a progress bar of that name is shown.
    """
    from contextlib import nullcontext

    from eclip.progress import progress_bar

    out = []
    with progress_bar(label, len(texts)) if label else nullcontext() as bar_task:
        for s in range(0, len(texts), batch):
            chunk = texts[s : s + batch]
            out.append(
                torch.nn.functional.normalize(model.encode_text(tokenizer(chunk).to(device)).float(), dim=-1).cpu()
            )
            if bar_task:
                bar_task[0].advance(bar_task[1], len(chunk))
    return torch.cat(out)


def recall_at(sim: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Recall@k of a square similarity matrix whose diagonal holds the relevant items."""
    rank = (sim > sim.diagonal()[:, None]).sum(dim=1)
    return {k: float((rank < k).float().mean()) for k in ks}


def zeroshot_top1(image_feats: torch.Tensor, class_feats: torch.Tensor, labels: np.ndarray) -> float:
    """Top-1 accuracy: ``labels`` ``(n,)`` int class positions, features L2-normalised."""
    pred = (image_feats @ class_feats.T).argmax(dim=1).numpy()
    return float((pred == labels).mean())


def evaluate_split(
    model: Any,
    tokenizer: Any,
    cat: Catalog,
    pixels: np.ndarray,
    rows: np.ndarray,
    text_cache: torch.Tensor | None,
    zeroshot_col: str | None,
    normalise: Callable,
    device: str,
    image_only: bool = False,
) -> dict[str, float]:
    """Retrieval recall@1/5 both ways and (with ``zeroshot_col``) zero-shot top-1 accuracy.

    With ``image_only`` the "text" side is each image's mirror view (view-retrieval recall)
    and there is no zero-shot accuracy (the text tower was not trained).
    """
    if len(rows) == 0:
        return {}
    img = _encode_images(model, pixels, rows, normalise, device)
    if image_only:
        txt = _encode_images(model, pixels, rows, lambda x: normalise(x).flip(-1), device)
        zeroshot_col = None
    elif text_cache is not None:
        txt = text_cache[rows]
    else:
        txt = encode_texts(model, tokenizer, [cat.texts[r] for r in rows], device)
    sim = img @ txt.T
    i2t, t2i = recall_at(sim), recall_at(sim.T)
    out = {"i2t_recall@1": i2t[1], "i2t_recall@5": i2t[5], "t2i_recall@1": t2i[1], "t2i_recall@5": t2i[5]}
    if zeroshot_col:
        values = cat.table.get_column(zeroshot_col).cast(pl.String).to_list()
        names = sorted({values[r] for r in rows if values[r]})
        pos = {n: i for i, n in enumerate(names)}
        keep = np.array([bool(values[r]) for r in rows])
        labels = np.array([pos[values[r]] for r in rows[keep]])
        class_feats = encode_texts(model, tokenizer, names, device)
        out["zeroshot_top1"] = zeroshot_top1(img[torch.from_numpy(keep)], class_feats, labels)
        out["zeroshot_classes"] = float(len(names))
    return out


def log_metrics(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line to the run's ``metrics.jsonl``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def evaluate_epoch(
    model, sm, cat, pixels, val_rows, text_cache, cfg, mean, std, device, metrics_path, epoch, step
) -> dict:  # noqa: ANN001
    """Evaluate on the validation rows (:func:`evaluate_split`), log the record and print it."""
    model.eval()
    result = evaluate_split(
        model,
        sm.tokenizer,
        cat,
        pixels,
        val_rows,
        text_cache,
        cfg.zeroshot_col,
        lambda x: normalise_pixels(x, mean, std),
        device,
        cfg.image_only,
    )
    model.train()
    record = {"eval": True, "epoch": epoch, "step": step, **result}
    log_metrics(metrics_path, record)
    shown = "  ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float))
    console.print(f"[bold]eval[/] epoch {epoch} step {step}: {shown}")
    return record
