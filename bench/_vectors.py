"""Embedding-like test vectors for the index and cluster benchmarks.

Real all-MiniLM-L6-v2 title embeddings of the shared catalogs (Abt-Buy names, WDC Products
titles, fashion titles, netmeds titles; about 21k distinct titles), expanded to any n by
perturbation: each synthetic vector is a title's embedding, moved a random 0-30 % of the way
towards another title's embedding, plus Gaussian noise of relative norm 0.05-0.35, then
L2-normalised. Every title thus gets a cloud of near-duplicates (what dedupe searches for)
and the clouds keep the real anisotropic structure of sentence embeddings, unlike uniform
random data on which recall@k means nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

TITLE_COLUMNS = {
    "abt_buy/catalog.csv": "name",
    "wdc_products/offers.csv": "title",
    "fashion/catalog.csv": "title",
    "netmeds/products.csv": "title",
}


def titles(data: Path) -> list[str]:
    """Distinct non-empty titles of the shared catalogs, in a fixed order."""
    seen: dict[str, None] = {}
    for rel, col in TITLE_COLUMNS.items():
        for t in pl.read_csv(data / rel, infer_schema=False)[col].drop_nulls().to_list():
            t = t.strip()
            if t:
                seen.setdefault(t, None)
    return list(seen)


def base_vectors(data: Path, cache: Path) -> np.ndarray:
    """``(t, 384)`` float32 L2-normalised MiniLM embeddings of :func:`titles`, cached in ``cache``."""
    path = cache / "minilm_titles.npy"
    if path.exists():
        return np.load(path)
    from eclip.encoders import load_encoder

    x = load_encoder("minilm").encode(titles(data)).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), x)
    path.with_suffix(".tmp.npy").rename(path)
    return x


def expand(
    base: np.ndarray,
    n: int,
    seed: int = 0,
    chunk: int = 100_000,
    mix: float = 0.3,
    noise: tuple[float, float] = (0.05, 0.35),
    sources: np.ndarray | None = None,
) -> np.ndarray:
    """``(n, d)`` float32 L2-normalised perturbed copies of ``base`` rows (see module doc);
    ``mix`` and ``noise`` set the largest move towards another title and the noise norms.
    When ``sources`` (an ``(n,)`` int64 array) is given, it receives each row's title."""
    rng = np.random.default_rng(seed)
    t, d = base.shape
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        a, b = rng.integers(0, t, m), rng.integers(0, t, m)
        alpha = rng.uniform(0.0, mix, (m, 1)).astype(np.float32)
        v = (1 - alpha) * base[a] + alpha * base[b]
        g = rng.standard_normal((m, d)).astype(np.float32)
        g *= rng.uniform(*noise, (m, 1)).astype(np.float32) / np.linalg.norm(g, axis=1, keepdims=True)
        v += g
        if sources is not None:
            sources[s : s + m] = a
        out[s : s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out
