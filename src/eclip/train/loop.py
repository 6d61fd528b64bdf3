"""The ``eclip train`` loop: contrastive image-title training that never loses a run.

Run directory::

    OUT/cache/            decoded images (uint8, memory-mapped), pHash, locked-text features
    OUT/checkpoints/      step-NNNNNNN.pt: model, optimiser, LR-schedule step, RNG, data position
    OUT/metrics.jsonl     one JSON object per logged step and per epoch evaluation
    OUT/model/            the trained model: open_clip_config.json + safetensors + model_card.json

Design (open_clip's ``training/train.py`` is the reference):

* **Schedule.** AdamW; linear warmup for ``warmup_steps`` then cosine decay to 0 over the run.
* **Large batches from small memory.** With ``accum_freq = K`` an optimiser step sees
  ``K x batch_size`` pairs *as one contrastive batch*: features of all K micro-batches are
  first computed without grad and cached, then each micro-batch is recomputed with grad and
  the loss over the full set of features is back-propagated (open_clip's ``--accum-freq``).
  Plain gradient accumulation would shrink each loss's negatives to one micro-batch.
* **Locked towers** (LiT, Zhai et al. 2022). ``lock_text`` freezes the text tower and, as its
  features never change, computes them once and caches them; ``lock_image`` freezes the
  image tower.
* **Distributed.** Under ``torchrun`` each rank takes every ``world``-th row of each global
  batch; features are gathered with gradient (gather-with-grad, local loss), and gradients are
  averaged over ranks.
* **Resuming.** Checkpoints hold everything the next step depends on; the data order of epoch
  ``e`` is a permutation drawn from ``seed + e``, so ``--resume latest`` continues a killed run
  to the same weights as an uninterrupted one (CPU, fixed seed).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eclip.catalog import Catalog
from eclip.catalog.images import ImageSettings
from eclip.checks import check_choice, check_range
from eclip.encoders.clip import save_model_dir
from eclip.encoders.embed import Dist
from eclip.errors import EclipError, RunDirError
from eclip.progress import console, progress_bar
from eclip.rundir import (
    fingerprint,
    load_npy,
    lock_dir,
    read_json,
    save_npy,
    texts_digest,
    unlock_dir,
    write_json,
)
from eclip.train.augment import augment, normalise_pixels
from eclip.train.checkpoint import Checkpoints, read_checkpoint
from eclip.train.data import group_keys, image_cache, split_by_id
from eclip.train.evaluate import encode_texts, evaluate_epoch, log_metrics
from eclip.train.loss import ContrastiveLoss
from eclip.train.model import StartingModel, starting_model
from eclip.train.schedule import lr_at

LOSSES = ("eclip", "clip")


@dataclass
class TrainConfig:
    """Settings of :func:`train`; all recorded in checkpoints and the model card.

    Attributes:
        init: ``minilm`` or an open_clip spec (see :mod:`eclip.train.model`).
        loss: ``eclip`` (multi-positive targets from group keys) or ``clip`` (identity).
        group_by: group-key sources for ``eclip`` (``col``, ``title``, ``phash``).
        group_col: column for the ``col`` source.
        image_size, timm_model: image tower of ``--init minilm``.
        lock_text, lock_image: freeze a tower; ``lock_text=None`` locks it for ``minilm``.
        cache_text: with a locked text tower, compute its features once and cache them
            (``False`` recomputes them every step, without grad; for benchmarks).
        epochs, batch_size, accum_freq: ``batch_size`` pairs per micro-batch, ``accum_freq``
            micro-batches per optimiser step (one contrastive batch).
        lr, weight_decay, warmup_steps: AdamW and the warmup+cosine schedule.
        val_fraction: share of ids held out (split by id hash).
        zeroshot_col: class column for zero-shot accuracy on validation (prompts ``{}``).
        checkpoint_every: steps between checkpoints (and one at every epoch end).
        seed: everything random derives from it.
        grad_checkpointing: recompute activations in backward (memory for compute).
        hflip: random horizontal flips of training images.
        image_only: no titles: two augmented views of each image are the positive pair
            (SimCLR-style InfoNCE through the image tower; for catalogs whose titles would leak
            the label, e.g. class names).
    """

    init: str = "minilm"
    loss: str = "eclip"
    group_by: tuple[str, ...] = ("title", "phash")
    group_col: str | None = None
    image_size: int = 64
    timm_model: str = "resnet18"
    lock_text: bool | None = None
    lock_image: bool = False
    cache_text: bool = True
    epochs: int = 8
    batch_size: int = 128
    accum_freq: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    val_fraction: float = 0.2
    zeroshot_col: str | None = None
    checkpoint_every: int = 100
    seed: int = 0
    grad_checkpointing: bool = False
    hflip: bool = True
    image_only: bool = False
    workers: int = -1
    device: str | None = None
    max_steps: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice(self, "loss", LOSSES)
        for name, lo in (
            ("epochs", 1),
            ("batch_size", 1),
            ("accum_freq", 1),
            ("checkpoint_every", 1),
            ("max_steps", 1),
        ):
            check_range(self, name, lo)
        check_range(self, "image_size", 8)
        check_range(self, "warmup_steps", 0)
        check_range(self, "workers", -1)
        check_range(self, "lr", 0.0, lo_open=True)
        check_range(self, "weight_decay", 0.0)
        check_range(self, "val_fraction", 0.0, 1.0, hi_open=True)


def _text_features(sm: StartingModel, texts: list[str], folder: Path, device: str, batch: int = 256) -> torch.Tensor:
    """Locked-text features of ``texts``, ``(n, d)`` float32 L2-normalised, cached on disk."""
    key = fingerprint(sm.describe, sm.model_cfg.get("text_cfg"), texts_digest(texts))
    meta, path = folder / "text_features.json", folder / "text_features.npy"
    if read_json(meta).get("key") == key:
        return torch.from_numpy(load_npy(path))
    feats = encode_texts(
        sm.model,
        sm.tokenizer,
        texts,
        device,
        batch,
        label=f"text features of {len(texts):,} titles (locked tower, computed once)",
    )
    save_npy(feats.numpy(), path)
    write_json({"key": key, "rows": len(texts)}, meta)
    return feats


def train(
    cat: Catalog, images: ImageSettings, out: str | Path, cfg: TrainConfig, resume: str | None = None
) -> dict[str, Any]:
    """Train image and text towers contrastively on a catalog's own images and titles.

    Args:
        cat: catalog with an image column (``cat.images``) and the title text.
        images: where images are read from.
        out: run directory (layout in the module docstring).
        resume: ``latest`` or a checkpoint path to continue from; ``None`` starts afresh
            (and refuses a run directory that already holds checkpoints).

    Returns:
        The model card (also written to ``OUT/model/model_card.json``).

    Raises:
        EclipError: no image column, too few training rows (a bad setting is refused when
            the :class:`TrainConfig` is made: ConfigError).
        RunDirError: checkpoints exist and ``resume`` is not given, or a checkpoint of
            another configuration; another process is writing ``out``.
    """
    if cat.images is None:
        raise EclipError("eclip train needs an image column (--image-col).")
    out = Path(out)
    dist = Dist.from_env()
    device = dist.device(cfg.device) or ("cuda" if torch.cuda.is_available() else "cpu")
    if dist.rank == 0:  # one writer per run directory; rank 0 writes checkpoints and the model
        lock_dir(out)
    ckpts = Checkpoints(out / "checkpoints")
    run_cfg = {
        k: v
        for k, v in asdict(cfg).items()
        if k not in ("workers", "device", "max_steps", "checkpoint_every", "cache_text")
    }
    run_key = fingerprint(run_cfg, texts_digest(cat.ids))
    if resume is None and ckpts.latest() is not None:
        raise RunDirError(
            f"{out} already holds checkpoints; pass --resume latest to continue that run, or use another --out."
        )

    torch.manual_seed(cfg.seed)
    sm = starting_model(cfg.init, cfg.image_size, cfg.timm_model, cfg.seed)
    model = sm.model.to(device)
    lock_text = cfg.lock_text if cfg.lock_text is not None else cfg.init.strip().lower() == "minilm"
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    for p in model.text.parameters() if hasattr(model, "text") else _text_params(model):
        p.requires_grad_(not lock_text)
    if cfg.lock_image:
        for p in model.visual.parameters():
            p.requires_grad_(False)

    size = sm.preprocess_cfg.get("size", cfg.image_size)
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    pixels, has_image, phash = image_cache(cat, images, size, out / "cache", cfg.workers)
    is_val = split_by_id(cat.ids, cfg.val_fraction)
    has_text = np.ones(len(cat), bool) if cfg.image_only else np.array([bool(t) for t in cat.texts])
    usable = has_image & has_text
    if (~usable).any():
        console.print(
            f"[yellow]{int((~has_image).sum()):,} row(s) without a usable image and {int((~has_text).sum()):,} without a title "
            "are left out of training and evaluation.[/]"
        )
    train_rows = np.flatnonzero(usable & ~is_val)
    val_rows = np.flatnonzero(usable & is_val)
    keys = (
        torch.from_numpy(group_keys(cat, cfg.group_by, cfg.group_col, phash, has_image))
        if cfg.loss == "eclip"
        else torch.arange(len(cat))
    )
    global_batch = cfg.batch_size * cfg.accum_freq * dist.world
    steps_per_epoch = len(train_rows) // global_batch
    if steps_per_epoch < 1:
        raise EclipError(
            f"{len(train_rows)} training rows (with a usable image and title) do not fill one batch of {global_batch}; lower --batch-size."
        )
    total = steps_per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    text_cache = (
        _text_features(sm, cat.texts, out / "cache", device)
        if lock_text and cfg.cache_text and not cfg.image_only
        else None
    )
    mean = sm.preprocess_cfg.get("mean") or [0.48145466, 0.4578275, 0.40821073]
    std = sm.preprocess_cfg.get("std") or [0.26862954, 0.26130258, 0.27577711]

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    loss_fn = ContrastiveLoss(
        cfg.loss == "eclip", dist.rank, dist.world, local_loss=dist.world > 1, gather_with_grad=True
    )
    encoder: Any = model
    if dist.world > 1:  # same start on every rank; gradients are averaged after each backward
        import torch.distributed as tdist

        for p in model.parameters():
            tdist.broadcast(p.data, src=0)

    step, epoch, batch_in_epoch = 0, 0, 0
    if resume is not None:
        path = ckpts.latest() if resume == "latest" else Path(resume)
        if path is None or not path.exists():
            raise RunDirError(f"no checkpoint to resume from in {out / 'checkpoints'} ({resume}).")
        state = read_checkpoint(path)
        if state.get("run_key") != run_key:
            raise RunDirError(
                f"{path} belongs to a run with other settings or data; use the same command, or another --out."
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step, epoch, batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        console.print(f"[green]resumed from {path.name}: epoch {epoch + 1}, step {step}[/]")

    metrics_path = out / "metrics.jsonl"
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.startswith("cuda")
        else torch.autocast("cpu", enabled=False)
    )

    def prepare(rows: np.ndarray) -> dict:
        """Draw this micro-batch's randomness once, so that a recompute sees the same inputs."""
        x = normalise_pixels(pixels[rows], mean, std)
        if cfg.image_only:
            return {"rows": rows, "a": augment(x), "b": augment(x)}
        if cfg.hflip:
            flip = torch.rand(len(rows)) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        return {"rows": rows, "a": x}

    def features(prep: dict) -> tuple[torch.Tensor, torch.Tensor]:
        rows = prep["rows"]
        with autocast:
            img = encoder.encode_image(prep["a"].to(device))
            if cfg.image_only:
                txt = encoder.encode_image(prep["b"].to(device))
            elif text_cache is not None:
                txt = text_cache[rows].to(device)
            else:
                with torch.set_grad_enabled(torch.is_grad_enabled() and not lock_text):
                    txt = encoder.encode_text(sm.tokenizer([cat.texts[r] for r in rows]).to(device))
        return torch.nn.functional.normalize(img.float(), dim=-1), torch.nn.functional.normalize(txt.float(), dim=-1)

    def save(e: int, b: int) -> None:
        if dist.rank == 0:
            ckpts.save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "rng": torch.get_rng_state(),
                    "step": step,
                    "epoch": e,
                    "batch_in_epoch": b,
                    "run_key": run_key,
                    "config": json.loads(json.dumps(run_cfg)),
                },
                step,
            )
        dist.barrier()

    seen = 0
    history: list[dict] = []

    def evaluate(at_epoch: int, at_step: int) -> dict:
        """Evaluate on the validation rows now, log and return the record (rank 0)."""
        return evaluate_epoch(
            model,
            sm,
            cat,
            pixels,
            val_rows,
            text_cache,
            cfg,
            mean,
            std,
            device,
            metrics_path,
            epoch=at_epoch,
            step=at_step,
        )

    if step == 0 and dist.rank == 0:
        history.append(evaluate(0, 0))
    t0 = time.perf_counter()
    eval_seconds = 0.0
    while epoch < cfg.epochs and step < total:
        perm = train_rows[
            torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(cfg.seed + epoch)).numpy()
        ]
        with progress_bar(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch * global_batch, unit="pairs") as (
            bar,
            task,
        ):
            bar.advance(task, batch_in_epoch * global_batch)
            while batch_in_epoch < steps_per_epoch and step < total:
                chunk = perm[batch_in_epoch * global_batch : (batch_in_epoch + 1) * global_batch]
                micro = [
                    chunk[dist.rank :: dist.world][j * cfg.batch_size : (j + 1) * cfg.batch_size]
                    for j in range(cfg.accum_freq)
                ]
                preps = [prepare(m) for m in micro]
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, total, cfg.lr, cfg.warmup_steps)
                opt.zero_grad(set_to_none=True)
                scale = model.logit_scale
                if cfg.accum_freq == 1:
                    img, txt = features(preps[0])
                    loss = loss_fn(img, txt, scale, keys[micro[0]].to(device))
                    loss.backward()
                else:
                    with torch.no_grad():
                        cached = [features(p) for p in preps]
                    all_keys = torch.cat([keys[m] for m in micro]).to(device)
                    for j, p in enumerate(preps):
                        img_j, txt_j = features(p)
                        imgs = torch.cat([c[0] if i != j else img_j for i, c in enumerate(cached)])
                        txts = torch.cat([c[1] if i != j else txt_j for i, c in enumerate(cached)])
                        loss = loss_fn(imgs, txts, scale, all_keys)
                        loss.backward()
                if dist.world > 1:
                    import torch.distributed as tdist

                    for p in params:
                        if p.grad is not None:
                            tdist.all_reduce(p.grad)
                            p.grad /= dist.world
                opt.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100))
                step += 1
                batch_in_epoch += 1
                seen += global_batch
                bar.advance(task, global_batch)
                if step % 10 == 0 and dist.rank == 0:
                    log_metrics(
                        metrics_path,
                        {
                            "step": step,
                            "epoch": epoch + 1,
                            "loss": round(float(loss.detach()), 5),
                            "lr": opt.param_groups[0]["lr"],
                            "logit_scale": round(float(model.logit_scale.detach().exp()), 3),
                        },
                    )
                if step % cfg.checkpoint_every == 0:
                    save(epoch, batch_in_epoch)
        if batch_in_epoch >= steps_per_epoch:
            epoch, batch_in_epoch = epoch + 1, 0
            save(epoch, 0)
            if dist.rank == 0:
                t_eval = time.perf_counter()
                history.append(evaluate(epoch, step))
                eval_seconds += time.perf_counter() - t_eval
    seconds = time.perf_counter() - t0
    card: dict[str, Any] = {}
    if dist.rank == 0:
        if not history or history[-1]["step"] != step:
            history.append(evaluate(epoch, step))
        card = {
            "eclip_model_card": 1,
            "data": {
                "catalog": str(cat.path.resolve()),
                "rows": len(cat),
                "train_rows": int(len(train_rows)),
                "val_rows": int(len(val_rows)),
                "rows_without_image": int((~has_image).sum()),
                "rows_without_title": int((~has_text).sum()),
                "split": f"by id hash, val_fraction {cfg.val_fraction}",
                "image_col": cat.image_col,
                "text_cols": list(cat.text_cols),
                "groups_with_several_rows": int((np.bincount(keys.numpy()) > 1).sum()) if cfg.loss == "eclip" else 0,
            },
            "start": sm.describe,
            "loss": {
                "variant": cfg.loss,
                "group_by": list(cfg.group_by) if cfg.loss == "eclip" else [],
                "logit_scale_final": round(float(model.logit_scale.detach().exp()), 3),
            },
            "training": {
                "steps": step,
                "epochs": epoch,
                "contrastive_batch": global_batch,
                "lock_text": lock_text,
                "lock_image": cfg.lock_image,
                "seconds_this_session": round(seconds, 1),
                "pairs_per_s": round(seen / (seconds - eval_seconds), 1) if seen else None,
                "world_size": dist.world,
                "device": device,
            },
            "config": run_cfg,
            "eval": history,
        }
        model_dir = save_model_dir(
            model.cpu(),
            sm.model_cfg,
            out / "model",
            {
                k: v
                for k, v in sm.preprocess_cfg.items()
                if k in ("size", "mean", "std", "interpolation", "resize_mode")
            },
        )
        write_json(card, model_dir / "model_card.json")
        unlock_dir(out)
    dist.barrier()
    return card


def _text_params(model: Any) -> list:
    """Text-tower parameters of a plain open_clip ``CLIP`` (its text modules sit on the model)."""
    names = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    return [p for n, p in model.named_parameters() if n.split(".")[0] in names]
