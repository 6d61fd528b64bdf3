"""The adult filter's concept vectors: embedded once per model and runtime, never mixed.

:func:`eclip.classify.adult.concept_vectors` embeds 5,778 concepts x 5 prompt templates
(28,890 short texts): as long as embedding a catalog of that many titles. The concepts are the
same for every catalog, so their vectors are looked up, in order:

1. **shipped** with the package for the bundled model (``data/concepts-minilm.npy``, float16,
   4.4 MB, beside ``.json`` holding the key they were made under): used when that key equals
   this run's, so a changed model, runtime, template or concept list never reads them;
2. **cached** per machine in ``<cache>/concepts/<key>.npy`` (float32), written atomically;
3. **embedded** by the same encoder and runtime as the catalog (ONNX Runtime on a CPU by
   default), with a progress bar, a chunk of concepts at a time; each chunk is kept in
   ``<cache>/concepts/<key>.parts/`` as it is done, so a run killed half-way resumes there.

The key (:func:`concepts_key`) is a digest of the model's identity (its weights digest, and
``onnx-int8`` when quantised), the runtime that embeds (``torch``, ``onnx``, ``onnx-int8``),
the templates and every concept name in order. ``torch`` and ``onnx`` give the same vectors
to 1e-5, but they are keyed apart all the same: a cache never serves one runtime's vectors to
another.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eclip.classify import adult
from eclip.classify.zeroshot import DEFAULT_TEMPLATES, label_vectors
from eclip.progress import progress_bar
from eclip.rundir import fingerprint, load_npy, read_json, save_npy, texts_digest, write_json

FORMAT = "eclip-concepts/1"
#: Vectors shipped for the bundled model, and their key.
SHIPPED = Path(__file__).parent / "data" / "concepts-minilm.npy"
SHIPPED_META = SHIPPED.with_suffix(".json")
#: Concepts embedded per step (and per resumable part).
CHUNK = 256


def concepts_key(
    model: dict[str, Any], runtime: str, templates: Sequence[str], names: Sequence[str] | None = None
) -> str:
    """16-hex-digit key of a set of concept vectors.

    Args:
        model: the model's identity (an embeddings manifest's ``model``, or
            ``encoder.describe()``). runtime: the runtime that embeds the prompts.
        templates: prompt templates. names: the concepts in order (default
            :func:`eclip.classify.adult.concept_names`).
    """
    names = list(names) if names is not None else adult.concept_names()
    return fingerprint(FORMAT, model, runtime, list(templates), texts_digest(names), len(names))


def _normalised(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def shipped_vectors(key: str, rows: int) -> np.ndarray | None:
    """The shipped vectors when they were made under ``key`` (``(rows, d)`` float32,
    L2-normalised again after float16), else ``None`` (missing, another key, or a file that
    does not read or has another number of rows)."""
    try:
        meta = read_json(SHIPPED_META)
        if meta.get("key") != key or not SHIPPED.exists():
            return None
        v = load_npy(SHIPPED)
    except Exception:  # noqa: BLE001 - any unreadable file means: embed them
        return None
    return _normalised(v) if v.ndim == 2 and v.shape[0] == rows else None


def embed_concepts(
    encode: Callable[[list[str]], np.ndarray],
    names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    parts: Path | None = None,
    chunk: int = CHUNK,
) -> np.ndarray:
    """``(len(names), d)`` float32 L2-normalised concept vectors (prompt-ensembled, as
    :func:`eclip.classify.zeroshot.label_vectors`), ``chunk`` names at a time under a
    progress bar.

    Args:
        encode: a text encoder's ``encode`` (``(m, d)`` float32 for ``m`` texts).
        parts: folder keeping each finished chunk (``<i>.npy``, written atomically); chunks
            already there are read instead of embedded. ``None``: keep nothing.
    """
    names = list(names)
    out: list[np.ndarray] = []
    with progress_bar(
        f"embedding {len(names):,} concepts x {len(templates)} prompt templates", len(names), "concepts"
    ) as (bar, task):
        for i, lo in enumerate(range(0, len(names), chunk)):
            part = names[lo : lo + chunk]
            path = parts / f"{i:05d}.npy" if parts is not None else None
            v = None
            if path is not None and path.exists():
                try:
                    v = load_npy(path)
                    v = v if v.ndim == 2 and v.shape[0] == len(part) else None
                except (OSError, ValueError):
                    v = None
            if v is None:
                v = label_vectors(encode, part, templates)
                if path is not None:
                    save_npy(v, path)
            out.append(np.asarray(v, dtype=np.float32))
            bar.advance(task, len(part))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def load_concept_vectors(
    model: dict[str, Any],
    runtime: str,
    cache_dir: Path,
    load_encoder: Callable[[], Any],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Every concept's vector, shipped, cached or embedded (see the module docstring).

    Args:
        model: identity of the model that embedded the catalog (its manifest's ``model``).
        runtime: the runtime that embedded it; the prompts must be embedded the same way.
        cache_dir: the machine's cache (:func:`eclip.encoders.sentence.default_cache_dir`);
            vectors go to ``cache_dir/concepts``.
        load_encoder: returns the text encoder to embed with; called only when neither shipped
            nor cached vectors fit.
        templates: prompt templates.

    Returns:
        ``((c, d) float32 L2-normalised vectors, adult concepts first, info)``; ``info`` holds
        ``source`` (``shipped``, ``cache`` or ``embedded``), ``key``, ``runtime`` and ``path``.

    Raises:
        ModelError: the encoder cannot be loaded. RunDirError: the cache cannot be written.
    """
    names = adult.concept_names()
    key = concepts_key(model, runtime, templates, names)
    info: dict[str, Any] = {"key": key, "runtime": runtime, "concepts": len(names), "templates": len(templates)}
    shipped = shipped_vectors(key, len(names))
    if shipped is not None:
        return shipped, {**info, "source": "shipped", "path": str(SHIPPED)}
    path = Path(cache_dir) / "concepts" / f"{key}.npy"
    if path.exists():
        try:
            v = load_npy(path)
            if v.ndim == 2 and v.shape[0] == len(names):
                return v.astype(np.float32, copy=False), {**info, "source": "cache", "path": str(path)}
        except (OSError, ValueError):
            pass  # a damaged entry is embedded again
    encoder = load_encoder()
    parts = path.with_suffix(".parts")
    vectors = embed_concepts(encoder.encode, names, templates, parts)
    save_npy(vectors, path)
    shutil.rmtree(parts, ignore_errors=True)
    return vectors, {**info, "source": "embedded", "path": str(path)}


def write_shipped(encoder: Any, runtime: str, templates: Sequence[str] = DEFAULT_TEMPLATES) -> Path:
    """Embed every concept with ``encoder`` and write them as the shipped float16 vectors
    (:data:`SHIPPED`) with their key (:data:`SHIPPED_META`), atomically.

    Run :func:`ship_bundled` after changing a concept, a template or the bundled model (a
    test checks that the shipped key is current).
    """
    names = adult.concept_names()
    vectors = embed_concepts(encoder.encode, names, templates)
    model = encoder.describe()
    save_npy(vectors.astype(np.float16), SHIPPED)
    write_json(
        {
            "format": FORMAT,
            "key": concepts_key(model, runtime, templates, names),
            "model": model,
            "runtime": runtime,
            "templates": list(templates),
            "concepts": len(names),
            "names_digest": texts_digest(names),
            "dtype": "float16",
            "shape": list(vectors.shape),
        },
        SHIPPED_META,
    )
    return SHIPPED


def ship_bundled() -> Path:
    """Write the shipped vectors of the bundled model through ONNX Runtime on the CPU (the
    runtime ``eclip embed`` uses there by default)::

        uv run --frozen --extra cpu python -c "from eclip.classify.concepts import ship_bundled; ship_bundled()"
    """
    from eclip.encoders import load_encoder

    encoder = load_encoder("minilm", device="cpu", runtime="onnx")
    return write_shipped(encoder, str(getattr(encoder, "runtime", "onnx")))
