"""The interface every encoder implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class Encoder(Protocol):
    """A dense encoder of titles, and of images when ``has_images``.

    Attributes:
        name: the model spec as the user gave it (recorded in manifests).
        dim: the embedding width ``d``.
        has_images: whether :meth:`encode_images` and :attr:`image_transform` exist.
        image_transform: PIL image -> ``(3, H, W)`` float tensor, or ``None``.
    """

    name: str
    dim: int
    has_images: bool
    image_transform: Callable[[Any], Any] | None

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns ``(len(texts), dim)`` float32, each row L2-normalised."""
        ...

    def encode_images(self, pixels: Any) -> np.ndarray:
        """Embed a ``(b, 3, H, W)`` image batch; returns ``(b, dim)`` float32, L2-normalised."""
        ...

    def describe(self) -> dict[str, Any]:
        """What identifies this encoder's output: model name, weights digest, dim, settings."""
        ...


#: Earlier name, kept for text-only callers.
TextEncoder = Encoder
