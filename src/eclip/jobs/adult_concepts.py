"""The concept vectors of ``filter-adult``, embedded the way the catalog was (the label-free
half itself is :mod:`eclip.classify.label_free`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eclip.classify.concepts import load_concept_vectors
from eclip.encoders import Embeddings, load_encoder
from eclip.encoders.onnx import RUNTIMES
from eclip.errors import RunDirError


def embedding_runtime(emb: Embeddings) -> str:
    """The runtime that embedded ``emb`` (``torch``, ``onnx``, ``onnx-int8``; ``torch`` for
    embeddings made before the manifest said)."""
    made = emb.manifest
    return str(made.get("runtime") or (made.get("model") or {}).get("runtime") or "torch")


def concept_vectors_for(
    emb: Embeddings, emb_dir: Path, spec: str, templates: tuple[str, ...], cache_dir: Path
) -> tuple[np.ndarray, dict[str, Any]]:
    """The concept vectors for rows of ``emb``: shipped, cached in ``cache_dir`` or embedded by
    ``spec``'s model through the runtime that embedded the rows
    (:func:`eclip.classify.concepts.load_concept_vectors`), reusing the ONNX export beside the
    embeddings. The model is loaded once in PyTorch to check it is the embeddings' own, and
    again in their runtime only when the vectors must be embedded.

    Raises:
        ModelError: bad spec. RunDirError: ``spec`` names another model than the embeddings'.
    """
    made_by = emb.manifest.get("model", {})
    runtime = embedding_runtime(emb)
    exports = Path(emb_dir) / "runtime"

    def load(how: str) -> Any:
        return load_encoder(
            spec,
            device="cpu" if how.startswith("onnx") else None,
            runtime=how if how in RUNTIMES else "auto",  # a static model's "model2vec" is its own
            cache_dir=exports if exports.is_dir() else None,
        )

    # the identity check needs no ONNX session (torch and onnx fp32 describe one model; int8 differs)
    check = runtime if runtime == "onnx-int8" or runtime not in RUNTIMES else "torch"
    encoder = load(check)
    if made_by and encoder.describe() != made_by:
        raise RunDirError(
            f"{emb_dir} was embedded with {made_by.get('name')} ({made_by.get('kind')}, weights {made_by.get('weights')}), "
            f"but --model {spec} is {encoder.describe().get('name')}; pass --model naming the model that made these embeddings."
        )
    return load_concept_vectors(
        made_by or encoder.describe(),
        runtime,
        cache_dir,
        lambda: encoder if check == runtime else load(runtime),  # only when neither shipped nor cached vectors fit
        templates,
    )
