"""Training checkpoints: written atomically, the last two kept, read as plain tensors only."""

from __future__ import annotations

from pathlib import Path

import torch

from eclip.encoders.clip import is_pickled_code_error, pickled_code_error
from eclip.rundir import atomic_path


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint (``step-NNNNNNN.pt``), loaded as plain tensors only
    (``torch.load(weights_only=True)``).

    Raises:
        ModelError: the file holds pickled code, in one line.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if is_pickled_code_error(exc):
            raise pickled_code_error(path) from None
        raise


class Checkpoints:
    """The ``step-NNNNNNN.pt`` files of a run's checkpoint folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def latest(self) -> Path | None:
        """The newest checkpoint, or ``None``."""
        found = sorted(self.folder.glob("step-*.pt"))
        return found[-1] if found else None

    def save(self, state: dict, step: int) -> Path:
        """Write ``state`` as step ``step`` atomically and keep only the last two."""
        path = self.folder / f"step-{step:07d}.pt"
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        for old in sorted(self.folder.glob("step-*.pt"))[:-2]:  # keep the last two
            old.unlink(missing_ok=True)
        return path
