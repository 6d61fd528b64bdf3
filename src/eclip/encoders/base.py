"""The interface every dense text encoder implements."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class TextEncoder(Protocol):
    """A dense text encoder.

    Attributes:
        name: the model's name as the user gave it (recorded in manifests).
        dim: the embedding width ``d``.
    """

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns ``(len(texts), dim)`` float32, each row L2-normalised."""
        ...

    def describe(self) -> dict[str, Any]:
        """What identifies this encoder's output: model name, revision/digest, dim, settings."""
        ...
