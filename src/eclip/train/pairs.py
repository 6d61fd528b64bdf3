"""Self-training: a sentence encoder fine-tuned on a catalog's own confident matches.

e-CLIP (Song et al., CIKM 2022, section 3) trains its encoders contrastively on a catalog's
own listings, without labels. A catalog without images has no second view of a listing, but
it has listings of the same product from other shops: the pairs a label-free ``eclip dedupe``
run is most sure of. Fine-tuning the text encoder on them teaches it what this catalog's
titles share when they name the same product (a model number, whatever the shop's words
around it) and what its look-alikes do not.

* **Loss**: symmetric InfoNCE over a batch of pairs (:class:`eclip.train.loss.ContrastiveLoss`),
  the other pairs of the batch as negatives, with e-CLIP's multi-positive targets keyed by
  the pair's group, so that two pairs of one product in a batch are not pushed apart. The
  logit scale is fixed at 20 (sentence-transformers' ``MultipleNegativesRankingLoss``).
* **Optimiser**: AdamW, linear warmup then cosine decay (:func:`eclip.train.schedule.lr_at`).
* **Resuming**: a checkpoint (weights, optimiser, step) every ``checkpoint_every`` steps;
  the order of epoch ``e`` is a permutation drawn from ``seed + e``, so a killed run goes on
  where it stopped.
* **Output**: a sentence-transformers folder (``model.save``) written beside its final place
  and renamed into it, with ``eclip_self_train.json`` (what it was trained on, and a SHA-256
  of its weights, so that caches keyed on the model never mix it with the model it started
  from).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eclip.checks import check_range
from eclip.errors import ModelError
from eclip.progress import progress_bar
from eclip.rundir import write_json

#: Inverse temperature of the loss (sentence-transformers' MultipleNegativesRankingLoss scale).
PAIR_LOGIT_SCALE = 20.0
#: Name of the file that marks a finished self-trained model folder.
MARKER = "eclip_self_train.json"
#: Beside the checkpoints: the digest of the task they belong to.
TASK_FILE = "task.sha256"


@dataclass
class PairTrainingConfig:
    """Settings of :func:`fine_tune_on_pairs`.

    Attributes:
        epochs: passes over the pairs. batch_size: pairs per step (each pair's partner is a
            negative for the other pairs). lr: peak learning rate. warmup_steps: linear warmup.
        seed: order of the pairs and dropout. checkpoint_every: steps between checkpoints.
        device: ``cpu``, ``cuda`` or ``None`` (CUDA when torch sees a GPU).
    """

    epochs: int = 2
    batch_size: int = 32
    lr: float = 2e-5
    warmup_steps: int = 10
    seed: int = 0
    checkpoint_every: int = 50
    device: str | None = None

    def __post_init__(self) -> None:
        for name, lo in (("epochs", 1), ("batch_size", 2), ("warmup_steps", 0), ("checkpoint_every", 1)):
            check_range(self, name, lo, None)
        check_range(self, "lr", 0.0, None, lo_open=True)


def weights_sha256(folder: Path) -> str:
    """SHA-256 (16 hex digits) of the contents of the ``.safetensors`` and ``.bin`` files."""
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in {".safetensors", ".bin"}:
            h.update(f.relative_to(folder).as_posix().encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def _task_digest(model_dir: Path, left: list[str], right: list[str], keys: np.ndarray, cfg: PairTrainingConfig) -> str:
    """SHA-256 (16 hex digits) of what a training run depends on: the starting model's
    weights digest, the pairs, their keys and the settings (not the device)."""
    from eclip.encoders.sentence import weights_digest

    h = hashlib.sha256(weights_digest(Path(model_dir)).encode())
    h.update(json.dumps({**asdict(cfg), "device": None}, sort_keys=True).encode())
    for x, y, k in zip(left, right, np.asarray(keys).tolist()):
        h.update(f"{x}\x1f{y}\x1f{k}\x1e".encode())
    return h.hexdigest()[:16]


def is_trained(folder: Path) -> bool:
    """Whether ``folder`` holds a finished self-trained model."""
    return (folder / MARKER).is_file()


def fine_tune_on_pairs(
    model_dir: Path,
    left: list[str],
    right: list[str],
    keys: np.ndarray,
    out: Path,
    cfg: PairTrainingConfig | None = None,
    about: dict | None = None,
) -> dict:
    """Fine-tune the sentence-transformers model in ``model_dir`` on text pairs.

    Args:
        model_dir: a sentence-transformers folder (the bundled MiniLM, or ``--model PATH``).
        left, right: the two texts of each pair (``p`` each).
        keys: ``(p,)`` int64 group of each pair: pairs with the same key are all positives
            of one another (e-CLIP's multi-positive targets).
        out: work folder: ``out/checkpoints`` while training, ``out/model`` when done.
        cfg: the settings; about: what the pairs came from, kept in the marker file.

    Returns:
        The marker's contents: settings, pairs, steps, first and last loss, seconds, the
        trained weights' SHA-256 and the task's (:func:`_task_digest`). When ``out/model``
        is already finished for the same task, its marker, without training again; a model
        or checkpoints of another task (other pairs, settings or starting model) are
        replaced.

    Raises:
        ModelError: fewer than 2 pairs, mismatched lengths, or a folder that is not a
            sentence-transformers model.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    from eclip.train.checkpoint import Checkpoints, read_checkpoint
    from eclip.train.loss import ContrastiveLoss
    from eclip.train.schedule import lr_at

    cfg = cfg or PairTrainingConfig()
    final = out / "model"
    if len(left) != len(right) or len(left) != len(keys):
        raise ModelError(f"self-training needs as many right texts and keys as left texts ({len(left)})")
    if len(left) < 2:
        raise ModelError(f"self-training needs at least 2 confident pairs; the first pass found {len(left)}")
    digest = _task_digest(model_dir, left, right, keys, cfg)
    if is_trained(final):
        done = json.loads((final / MARKER).read_text("utf-8"))
        if done.get("task_sha256") == digest:
            return done
        shutil.rmtree(final)  # trained on other pairs or settings: train again
    if (out / "checkpoints" / TASK_FILE).is_file() and (out / "checkpoints" / TASK_FILE).read_text() != digest:
        shutil.rmtree(out / "checkpoints")  # checkpoints of another task are not resumed
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "checkpoints" / TASK_FILE).write_text(digest)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = SentenceTransformer(str(model_dir), device=device)
    except Exception as exc:
        raise ModelError(f"{model_dir}: not a sentence-transformers model folder ({exc})") from None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    loss_fn = ContrastiveLoss(multi_positive=True)
    log_scale = torch.tensor(math.log(PAIR_LOGIT_SCALE), device=device)
    key_t = torch.as_tensor(np.asarray(keys, dtype=np.int64))
    per_epoch = math.ceil(len(left) / cfg.batch_size)
    total = per_epoch * cfg.epochs
    ckpts = Checkpoints(out / "checkpoints")
    step, losses = 0, []
    latest = ckpts.latest()
    if latest is not None:
        state = read_checkpoint(latest)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, losses = int(state["step"]), [float(x) for x in state["losses"]]
    t0 = time.perf_counter()
    model.train()
    with progress_bar("self-training the text encoder", total * cfg.batch_size, unit="pairs") as (bar, task):
        bar.advance(task, step * cfg.batch_size)
        while step < total:
            epoch, b = divmod(step, per_epoch)
            order = np.random.default_rng(cfg.seed + epoch).permutation(len(left))
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            torch.manual_seed(cfg.seed + step)  # dropout
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, cfg.lr, cfg.warmup_steps)

            def embed(texts: list[str]) -> torch.Tensor:
                raw = (getattr(model, "preprocess", None) or model.tokenize)(texts)
                feats = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in raw.items()}
                return torch.nn.functional.normalize(model(feats)["sentence_embedding"], dim=-1)

            ea, eb = embed([left[i] for i in idx]), embed([right[i] for i in idx])
            loss = loss_fn(ea, eb, log_scale, key_t[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(round(float(loss.detach()), 5))
            bar.advance(task, len(idx))
            if step % cfg.checkpoint_every == 0 and step < total:
                ckpts.save(
                    {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "losses": losses}, step
                )
    model.eval()
    tmp = out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    marker = {
        "format": "eclip-self-train/1",
        "started_from": str(model_dir),
        "settings": asdict(cfg),
        "pairs": len(left),
        "groups": int(len(np.unique(keys))),
        "steps": step,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "weights_sha256": weights_sha256(tmp),
        "task_sha256": digest,
        **({"trained_on": about} if about else {}),
    }
    write_json(marker, tmp / MARKER)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    shutil.rmtree(ckpts.folder, ignore_errors=True)
    return marker
