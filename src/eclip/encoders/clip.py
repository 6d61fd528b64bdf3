"""open_clip image+text encoders, and the model folders eclip writes.

A model folder is what open_clip's ``local-dir:`` and ``hf-hub:`` schemas read:
``open_clip_config.json`` (``{"model_cfg": ..., "preprocess_cfg": ...}``) and
``open_clip_model.safetensors``. Weights are only ever read as safetensors or with
``torch.load(weights_only=True)`` (open_clip's default, kept).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from eclip.encoders.spec import ModelSpec, bundled_minilm_path
from eclip.errors import ModelError
from eclip.rundir import umask_mode

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
#: The hub id eclip-trained configs use for the MiniLM text tower; eclip maps it to the
#: bundled offline copy, plain open_clip fetches it from the hub.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

_OFFLINE_HINT = (
    "set HF_HUB_OFFLINE=0 on a machine with network access to download it once, "
    "or pass a local checkpoint (--model openclip:ARCH:/path/ckpt.pt or a folder with open_clip_config.json)"
)


def _file_digest(path: Path, block: int = 1 << 20) -> str:
    """SHA-256 (16 hex) of a file's size, first and last MiB: instant even for large checkpoints."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(block))
        if path.stat().st_size > block:
            fh.seek(-block, os.SEEK_END)
            h.update(fh.read(block))
    return h.hexdigest()[:16]


def is_pickled_code_error(exc: BaseException) -> bool:
    """Whether ``torch.load(..., weights_only=True)`` refused ``exc``'s file for holding
    pickled objects other than tensors."""
    return isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in str(exc)


def pickled_code_error(where: object) -> ModelError:
    """The one-line refusal of a checkpoint holding pickled code (never advice to turn
    ``weights_only`` off)."""
    return ModelError(
        f"{where}: holds pickled code; eclip loads only plain tensors (a state_dict saved with "
        "torch.save) or safetensors. Save the weights as a state_dict or in .safetensors."
    )


def _folder(spec: ModelSpec) -> Path:
    """The model folder of a ``local-dir`` spec (:func:`eclip.encoders.spec.parse_model_spec` always sets ``location``)."""
    assert spec.location is not None, spec
    return Path(spec.location)


def _explain_load_error(spec: ModelSpec, exc: Exception) -> ModelError:
    text = str(exc)
    if is_pickled_code_error(exc):
        return pickled_code_error(spec.pretrained or spec.location or spec.raw)
    if any(m in text for m in ("size mismatch", "Missing key", "Unexpected key", "pos_embed width changed")):
        first = next(
            (ln.strip() for ln in text.splitlines() if "size mismatch" in ln or "key" in ln.lower()), text[:200]
        )
        return ModelError(
            f"model {spec.raw!r}: the checkpoint does not fit the architecture ({first}). "
            "Pass the architecture the checkpoint was trained with."
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if spec.needs_network:
        why = "HF_HUB_OFFLINE is set and the weights are not in the local cache" if offline else "the download failed"
        return ModelError(
            f"model {spec.raw!r}: cannot get its weights ({why}: {text.splitlines()[0][:160] if text else type(exc).__name__}); {_OFFLINE_HINT}."
        )
    return ModelError(
        f"model {spec.raw!r}: cannot load it: {text.splitlines()[0][:200] if text else type(exc).__name__}"
    )


class OpenClipEncoder:
    """An open_clip model: text and image towers into one ``dim``-d space.

    Args:
        spec: a parsed spec of kind ``openclip``, ``hf-hub`` or ``local-dir``.
        device: torch device; ``None`` picks ``cuda`` when torch sees a GPU.
        batch_size: texts per forward pass in :meth:`encode`.

    On CUDA the forward passes run under bf16 autocast; outputs are float32 either way.

    Raises:
        ModelError: unknown architecture or tag, missing weights offline (the message says to
            set ``HF_HUB_OFFLINE=0`` or pass a local checkpoint), or a checkpoint that does not
            fit the architecture.
    """

    has_images = True

    def __init__(self, spec: ModelSpec, device: str | None = None, batch_size: int = 64) -> None:
        import open_clip
        import torch

        self.spec = spec
        self.name = spec.raw
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        if spec.kind == "openclip":
            model_name, pretrained = spec.arch, spec.pretrained
        elif spec.kind == "local-dir":
            model_name, pretrained = f"local-dir:{spec.location}", None
        elif spec.kind == "hf-hub":
            model_name, pretrained = spec.raw, None
        else:  # pragma: no cover - the factory routes other kinds elsewhere
            raise ModelError(f"model {spec.raw!r} is not an open_clip model")
        try:
            if spec.kind == "local-dir" and "hf_model_name" in json.loads(
                (_folder(spec) / CONFIG_FILE).read_text("utf-8")
            )["model_cfg"].get("text_cfg", {}):
                model, self.tokenizer, preprocess = _load_hf_text_dir(_folder(spec), self.device)
            else:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=pretrained, device=self.device, weights_only=True
                )
                self.tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as exc:  # noqa: BLE001 - every loader failure becomes one clear message
            raise _explain_load_error(spec, exc) from exc
        model.eval()
        self.model = model
        self.image_transform = preprocess
        self.dim = int(
            model.text_projection.shape[1]
            if getattr(model, "text_projection", None) is not None and model.text_projection.ndim == 2
            else self._probe_dim()
        )
        self._weights = self._weights_id()

    def _probe_dim(self) -> int:
        import torch

        with torch.no_grad():
            return int(self.model.encode_text(self.tokenizer(["x"]).to(self.device)).shape[-1])

    def _weights_id(self) -> str:
        if self.spec.kind == "local-dir":
            files = sorted(_folder(self.spec).glob("*.safetensors")) + sorted(_folder(self.spec).glob("*.bin"))
            return ",".join(_file_digest(f) for f in files) or "random-init"
        if self.spec.pretrained and Path(self.spec.pretrained).is_file():
            return _file_digest(Path(self.spec.pretrained))
        return self.spec.pretrained or "random-init"

    def _autocast(self):  # noqa: ANN202
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16) if str(self.device).startswith("cuda") else nullcontext()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``: ``(len(texts), dim)`` float32, L2-normalised rows."""
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with torch.inference_mode(), self._autocast():
            for s in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(texts[s : s + self.batch_size]).to(self.device)
                parts.append(torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu())
        return torch.cat(parts).numpy().astype(np.float32, copy=False)

    def encode_images(self, pixels: Any) -> np.ndarray:
        """Embed a preprocessed image batch.

        Args:
            pixels: ``(b, 3, H, W)`` float tensor from :attr:`image_transform`.

        Returns:
            ``(b, dim)`` float32, L2-normalised rows.
        """
        import torch

        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            feats = self.model.encode_image(pixels.to(self.device, non_blocking=True))
            return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        """What identifies this encoder's output (recorded in manifests and index keys)."""
        return {
            "kind": "open_clip",
            "name": self.name,
            "arch": self.spec.arch,
            "dim": self.dim,
            "weights": self._weights,
        }


def localise_cfg(model_cfg: dict) -> dict:
    """A copy of ``model_cfg`` whose MiniLM text tower points at the bundled offline copy."""
    cfg = copy.deepcopy(model_cfg)
    text = cfg.get("text_cfg", {})
    if text.get("hf_model_name") == MINILM_HUB_ID or text.get("hf_tokenizer_name") == MINILM_HUB_ID:
        path = str(bundled_minilm_path())
        text["hf_model_name"] = path
        text["hf_tokenizer_name"] = path
    return cfg


def build_from_cfg(model_cfg: dict, pretrained_text: bool = False) -> tuple[Any, Any]:
    """Build an open_clip model (and tokenizer) from a portable ``model_cfg``, offline.

    Args:
        pretrained_text: load the MiniLM text weights (the starting point); otherwise random,
            to be overwritten by a checkpoint.
    """
    import open_clip
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    cfg = localise_cfg(model_cfg)
    cfg.pop("custom_text", None)
    text = cfg.get("text_cfg", {})
    if "hf_model_name" in text:
        from transformers.utils import logging as hf_logging

        text["hf_model_pretrained"] = pretrained_text
        level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # MiniLM's unused pooler weights are expected, not news
        hf_logging.disable_progress_bar()
        try:
            model = open_clip.CustomTextCLIP(**cfg)
        finally:
            hf_logging.set_verbosity(level)
            if bars:
                hf_logging.enable_progress_bar()
        tokenizer = HFTokenizer(text["hf_tokenizer_name"], context_length=text.get("context_length", 64))
    else:
        model = open_clip.CLIP(**cfg)
        tokenizer = SimpleTokenizer(context_length=text.get("context_length", 77))
    return model, tokenizer


def _load_hf_text_dir(folder: Path, device: str) -> tuple[Any, Any, Any]:
    """Model, tokenizer and eval transform of a folder whose text tower is a Hugging Face model."""
    import open_clip

    cfg = json.loads((folder / CONFIG_FILE).read_text("utf-8"))
    model, tokenizer = build_from_cfg(cfg["model_cfg"])
    weights = next(iter(sorted(folder.glob("*.safetensors"))), None)
    if weights is None:
        raise ModelError(f"{folder}: no .safetensors weights beside {CONFIG_FILE}.")
    open_clip.load_checkpoint(model, str(weights), weights_only=True)
    pre = cfg.get("preprocess_cfg", {})
    size = pre.get("size", cfg["model_cfg"]["vision_cfg"].get("image_size", 224))
    transform = open_clip.image_transform(
        size,
        is_train=False,
        mean=pre.get("mean"),
        std=pre.get("std"),
        interpolation=pre.get("interpolation"),
        resize_mode=pre.get("resize_mode"),
    )
    return model.to(device), tokenizer, transform


def save_model_dir(model: Any, model_cfg: dict, folder: str | Path, preprocess_cfg: dict | None = None) -> Path:
    """Write an open_clip model as a folder that ``--model PATH`` (``local-dir:``) loads.

    Writes ``open_clip_config.json`` and ``open_clip_model.safetensors`` into a temporary
    folder and renames it over ``folder``, so a kill never leaves half a model.

    Args:
        model: an open_clip ``CLIP``/``CustomTextCLIP`` module.
        model_cfg: the architecture config it was built from (open_clip's ``model_cfg``).
        preprocess_cfg: image mean/std/size overrides (open_clip's ``preprocess_cfg``).
    """
    from safetensors.torch import save_model

    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (tmp / CONFIG_FILE).write_text(
            json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}, indent=2), "utf-8"
        )
        save_model(model, str(tmp / WEIGHTS_FILE))
        if target.exists():
            shutil.rmtree(target)
        umask_mode(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def create_model_dir(model_cfg: dict, folder: str | Path, seed: int = 0) -> Path:
    """Build an open_clip model with random weights from ``model_cfg`` and save it as a folder.

    The starting point of ``eclip train`` from scratch, and the tiny models of tests and
    benchmarks.
    """
    import open_clip
    import torch

    torch.manual_seed(seed)
    cfg = json.loads(json.dumps(model_cfg))
    try:
        model = (
            open_clip.CLIP(**cfg) if "hf_model_name" not in cfg.get("text_cfg", {}) else open_clip.CustomTextCLIP(**cfg)
        )
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot build an open_clip model from this config: {exc}") from exc
    return save_model_dir(model, model_cfg, folder)
