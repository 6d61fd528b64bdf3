"""Resumable, content-addressed embedding cache.

Texts are embedded in chunks. Each chunk is saved as ``chunks/<digest>.npy``, where the digest
covers the encoder's description and the chunk's texts. A rerun, or a run resumed after a kill,
loads every chunk already on disk and embeds only the rest; the full matrix is then written to
``<name>.npy`` with a manifest beside it. Chunks of another model never match, so a cache
directory can be shared by runs over several catalogs or models without mixing them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eclip.encoders.base import TextEncoder
from eclip.progress import progress_bar
from eclip.rundir import fingerprint, load_npy, read_json, save_npy, texts_digest, write_json

CHUNK_ROWS = 2048


def embed_cached(
    encoder: TextEncoder,
    texts: list[str],
    cache_dir: str | Path,
    name: str = "text",
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[np.ndarray, dict]:
    """Embed ``texts`` with ``encoder``, reusing whatever ``cache_dir`` already holds.

    Args:
        encoder: any :class:`~eclip.encoders.base.TextEncoder`.
        texts: ``n`` strings (empty strings are embedded like any other).
        cache_dir: folder for ``chunks/`` and ``<name>.npy`` / ``<name>.json``.
        name: stem of the final matrix and its manifest.
        chunk_rows: rows per resumable chunk.

    Returns:
        ``(embeddings, info)``: ``(n, encoder.dim)`` float32 L2-normalised rows, and a dict with
        the encoder description, digest, and counts of reused and newly embedded rows.
    """
    cache = Path(cache_dir)
    model = encoder.describe()
    key = fingerprint(model, texts_digest(texts))
    final, meta_path = cache / f"{name}.npy", cache / f"{name}.json"
    meta = read_json(meta_path)
    if meta.get("key") == key and final.exists():
        emb = load_npy(final)
        if emb.shape == (len(texts), encoder.dim):
            return emb, {**meta, "reused_rows": len(texts), "embedded_rows": 0}

    chunks_dir = cache / "chunks"
    starts = list(range(0, len(texts), chunk_rows))
    parts: list[np.ndarray] = []
    paths: list[Path] = []
    reused = embedded = 0
    with progress_bar(f"embedding {len(texts):,} texts ({encoder.name})", len(texts)) as (bar, task):
        for s in starts:
            chunk = texts[s : s + chunk_rows]
            path = chunks_dir / f"{fingerprint(model, texts_digest(chunk))}.npy"
            paths.append(path)
            arr = load_npy(path) if path.exists() else None
            if arr is None or arr.shape != (len(chunk), encoder.dim):
                arr = encoder.encode(chunk)
                save_npy(arr, path)
                embedded += len(chunk)
            else:
                reused += len(chunk)
            parts.append(arr)
            bar.advance(task, len(chunk))
    emb = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), dtype=np.float32)
    save_npy(emb, final)
    info = {"key": key, "model": model, "rows": len(texts), "dim": encoder.dim, "chunk_rows": chunk_rows}
    write_json(info, meta_path)
    for path in paths:  # the final matrix now holds every chunk; drop them
        path.unlink(missing_ok=True)
    return emb, {**info, "reused_rows": reused, "embedded_rows": embedded}
