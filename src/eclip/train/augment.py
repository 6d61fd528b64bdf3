"""Image batches for training: pixel normalisation and SimCLR-style augmented views."""

from __future__ import annotations

import math

import numpy as np
import torch


def normalise_pixels(x: np.ndarray | torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 ``(b, 3, S, S)`` pixels (array or tensor) -> float32 normalised tensor."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x.float() / 255.0 - m) / s


def augment(x: torch.Tensor, min_scale: float = 0.35) -> torch.Tensor:
    """SimCLR-style views of a normalised ``(b, 3, S, S)`` batch: random resized crop
    (area ``min_scale``-1), horizontal flip, brightness/contrast jitter; torch's RNG only."""
    b, _, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(b):
        area = float(torch.empty(1).uniform_(min_scale, 1.0))
        ratio = float(torch.exp(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3))))
        ch = max(4, min(h, int(round(h * math.sqrt(area / ratio)))))
        cw = max(4, min(w, int(round(w * math.sqrt(area * ratio)))))
        top = int(torch.randint(0, h - ch + 1, (1,)))
        left = int(torch.randint(0, w - cw + 1, (1,)))
        crop = x[i : i + 1, :, top : top + ch, left : left + cw]
        view = torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
        if float(torch.rand(1)) < 0.5:
            view = view.flip(-1)
        gain, shift = float(torch.empty(1).uniform_(0.7, 1.3)), float(torch.empty(1).uniform_(-0.3, 0.3))
        out[i] = view * gain + shift
    return out
