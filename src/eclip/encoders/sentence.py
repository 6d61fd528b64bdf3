"""Sentence-transformers text encoders (default: all-MiniLM-L6-v2, bundled offline)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eclip.encoders.onnx import OnnxTextRuntime, resolve_runtime
from eclip.errors import ModelError


def default_cache_dir() -> Path:
    """Where derived models (ONNX exports, distilled static models) are kept when no run
    directory is given: ``$ECLIP_CACHE_DIR``, else ``~/.cache/eclip``."""
    return Path(os.environ.get("ECLIP_CACHE_DIR") or Path.home() / ".cache" / "eclip")


def weights_digest(model_dir: Path) -> str:
    """SHA-256 (16 hex digits) over the sizes and names of the weight files of ``model_dir``.

    Sizes rather than contents keep this instant for large checkpoints; any retrained or
    different checkpoint changes at least the file set or sizes in practice. A model that
    ``eclip dedupe --self-train`` fine-tuned keeps the sizes of the one it started from, so
    its marker file (:data:`eclip.train.pairs.MARKER`, which holds a SHA-256 of the
    weights' contents) is hashed by content.
    """
    h = hashlib.sha256()
    for f in sorted(model_dir.rglob("*")):
        if f.is_file() and f.suffix in {".safetensors", ".bin", ".json", ".txt"}:
            h.update(f"{f.relative_to(model_dir)}:{f.stat().st_size}".encode())
            if f.name == "eclip_self_train.json":
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


class SentenceTransformerEncoder:
    """A local sentence-transformers model directory, run with ``normalize_embeddings=True``.

    Args:
        name: the name recorded in manifests.
        model_dir: a folder holding a sentence-transformers model (``modules.json`` and weights).
        device: ``"cpu"``, ``"cuda"`` or ``None`` for CUDA when torch sees a GPU.
        batch_size: texts per forward pass.
        runtime: ``auto``, ``torch``, ``onnx`` (ONNX Runtime, fp32: the same vectors) or
            ``onnx-int8`` (see :mod:`eclip.encoders.onnx`).
        cache_dir: where exported ONNX graphs are kept (default: :func:`default_cache_dir`).

    Attributes:
        runtime: the runtime in use (``auto`` resolved).

    Raises:
        ModelError: the folder is not a sentence-transformers model or fails to load, an
            unknown runtime, or an ONNX export that fails.
    """

    has_images = False
    image_transform: Callable[[Any], Any] | None = None

    def __init__(
        self,
        name: str,
        model_dir: Path,
        device: str | None = None,
        batch_size: int = 64,
        runtime: str = "auto",
        cache_dir: Path | None = None,
    ) -> None:
        if not (model_dir / "modules.json").exists() and not (model_dir / "config.json").exists():
            raise ModelError(
                f"{model_dir}: not a sentence-transformers model folder (no modules.json or config.json). "
                "Pass a folder saved with SentenceTransformer.save(), or the default model name."
            )
        try:
            import torch
            from sentence_transformers import SentenceTransformer

            if device is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear message
            raise ModelError(f"{model_dir}: cannot load as a sentence-transformers model: {exc}") from exc
        self.name = name
        self.model_dir = model_dir
        self.device = device
        self.batch_size = batch_size
        self._onnx: OnnxTextRuntime | None = None
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim = int(dim) if dim is not None else int(self.encode(["x"]).shape[1])
        self._digest = weights_digest(model_dir)
        self.runtime = resolve_runtime(runtime, str(device))
        if self.runtime.startswith("onnx"):
            precision = "int8" if self.runtime == "onnx-int8" else "fp32"
            self._onnx = OnnxTextRuntime(
                self._model, self._digest, Path(cache_dir or default_cache_dir()) / "onnx", precision
            )

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``: ``(len(texts), dim)`` float32, L2-normalised rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            return self._onnx.encode(texts, self.batch_size)
        out = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(out, dtype=np.float32)

    def encode_images(self, pixels: Any) -> np.ndarray:
        """Text-only model: always raises :class:`ModelError`."""
        raise ModelError(
            f"{self.name} is a text-only model; pass an open_clip model (--model openclip:ARCH:...) to embed images."
        )

    def describe(self) -> dict[str, Any]:
        """Model identity. ``torch`` and ``onnx`` (fp32) give the same vectors (to 1e-5,
        tested), so they share it and one may resume the other's embeddings; ``onnx-int8``
        vectors differ, so it is part of the identity."""
        out = {"kind": "sentence-transformers", "name": self.name, "dim": self.dim, "weights": self._digest}
        return out | {"runtime": "onnx-int8"} if self.runtime == "onnx-int8" else out
