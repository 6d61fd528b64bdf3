"""One entry point for every model: :func:`load_encoder` (specs in :mod:`eclip.encoders.spec`)."""

from __future__ import annotations

from pathlib import Path

from eclip.encoders.base import Encoder
from eclip.encoders.spec import DEFAULT_MODEL, DEFAULT_TEXT_MODEL, bundled_minilm_path, parse_model_spec

__all__ = ["DEFAULT_TEXT_MODEL", "load_encoder", "load_text_encoder"]


def load_encoder(spec: str = DEFAULT_MODEL, device: str | None = None, batch_size: int = 64) -> Encoder:
    """Load the model a spec names.

    Args:
        spec: see :mod:`eclip.encoders.spec` (``minilm``, ``openclip:ARCH[:TAG|:FILE]``,
            ``hf-hub:ORG/NAME``, a model folder).
        device: torch device; ``None`` picks CUDA when torch sees a GPU.
        batch_size: texts per forward pass.

    Returns:
        A text-only sentence encoder (``has_images`` False) or an open_clip encoder.

    Raises:
        ModelError: unknown spec, weights that cannot be had offline, or a checkpoint that does
            not fit its architecture; the message says what to do.
    """
    from eclip.encoders.clip import OpenClipEncoder
    from eclip.encoders.sentence import SentenceTransformerEncoder

    parsed = parse_model_spec(spec)
    if parsed.kind == "minilm":
        return SentenceTransformerEncoder(DEFAULT_TEXT_MODEL, bundled_minilm_path(), device, batch_size)
    if parsed.kind == "sentence":
        return SentenceTransformerEncoder(parsed.raw, Path(parsed.location), device, batch_size)
    return OpenClipEncoder(parsed, device, batch_size)


#: Earlier name of :func:`load_encoder`.
load_text_encoder = load_encoder
