import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("ECLIP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED} (set ECLIP_SHARED_DATA)")
    return SHARED


class HashEncoder:
    """A tiny deterministic encoder: hashed character trigrams, L2-normalised (no weights)."""

    name = "hash-trigrams"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls = 0
        self.rows = 0

    def encode(self, texts):
        self.calls += 1
        self.rows += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            t = f"  {t.lower()} "
            for j in range(len(t) - 2):
                out[i, hash(t[j : j + 3]) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    def describe(self):
        return {"kind": "test", "name": self.name, "dim": self.dim}


@pytest.fixture
def hash_encoder() -> HashEncoder:
    return HashEncoder()
