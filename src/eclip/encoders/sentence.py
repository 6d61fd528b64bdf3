"""Sentence-transformers text encoders (default: all-MiniLM-L6-v2, bundled offline)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from eclip.errors import ModelError


def _weights_digest(model_dir: Path) -> str:
    """SHA-256 (16 hex digits) over the sizes and names of the weight files of ``model_dir``.

    Sizes rather than contents keep this instant for large checkpoints; any retrained or
    different checkpoint changes at least the file set or sizes in practice.
    """
    h = hashlib.sha256()
    for f in sorted(model_dir.rglob("*")):
        if f.is_file() and f.suffix in {".safetensors", ".bin", ".json", ".txt"}:
            h.update(f"{f.relative_to(model_dir)}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


class SentenceTransformerEncoder:
    """A local sentence-transformers model directory, run with ``normalize_embeddings=True``.

    Args:
        name: the name recorded in manifests.
        model_dir: a folder holding a sentence-transformers model (``modules.json`` and weights).
        device: ``"cpu"``, ``"cuda"`` or ``None`` for CUDA when torch sees a GPU.
        batch_size: texts per forward pass.

    Raises:
        ModelError: the folder is not a sentence-transformers model or fails to load.
    """

    has_images = False
    image_transform = None

    def __init__(self, name: str, model_dir: Path, device: str | None = None, batch_size: int = 64) -> None:
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
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim = int(dim) if dim is not None else int(self.encode(["x"]).shape[1])
        self._digest = _weights_digest(model_dir)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``: ``(len(texts), dim)`` float32, L2-normalised rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
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
        raise ModelError(f"{self.name} is a text-only model; pass an open_clip model (--model openclip:ARCH:...) to embed images.")

    def describe(self) -> dict[str, Any]:
        return {"kind": "sentence-transformers", "name": self.name, "dim": self.dim, "weights": self._digest}
