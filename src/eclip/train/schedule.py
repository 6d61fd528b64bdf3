"""The learning-rate schedule of ``eclip train`` (open_clip's ``cosine_lr``: linear warmup,
then cosine decay)."""

from __future__ import annotations

import math


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total`` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, progress)))
