"""One entry point for every model: :func:`load_encoder` (specs in :mod:`eclip.encoders.spec`)."""

from __future__ import annotations

from pathlib import Path

from eclip.encoders.base import Encoder
from eclip.encoders.spec import DEFAULT_MODEL, DEFAULT_TEXT_MODEL, bundled_minilm_path, parse_model_spec
from eclip.errors import ModelError

__all__ = ["DEFAULT_TEXT_MODEL", "load_encoder", "load_text_encoder"]


def load_encoder(
    spec: str = DEFAULT_MODEL,
    device: str | None = None,
    batch_size: int = 64,
    runtime: str = "auto",
    cache_dir: Path | None = None,
) -> Encoder:
    """Load the model a spec names.

    Args:
        spec: see :mod:`eclip.encoders.spec` (``minilm``, ``openclip:ARCH[:TAG|:FILE]``,
            ``hf-hub:ORG/NAME``, a model folder).
        device: torch device; ``None`` picks CUDA when torch sees a GPU.
        batch_size: texts per forward pass.
        runtime: how a sentence-transformers tower runs: ``auto``, ``torch``, ``onnx`` or
            ``onnx-int8`` (:mod:`eclip.encoders.onnx`); other models run in PyTorch.
        cache_dir: where ONNX exports are kept (the embedding jobs: next to the embeddings);
            default :func:`eclip.encoders.sentence.default_cache_dir`. Distilled static
            models are made once per machine, in :func:`~eclip.encoders.sentence.default_cache_dir`.

    Returns:
        A text-only sentence encoder (``has_images`` False) or an open_clip encoder.

    Raises:
        ModelError: unknown spec, weights that cannot be had offline, or a checkpoint that does
            not fit its architecture; the message says what to do.
    """
    from eclip.encoders.clip import OpenClipEncoder
    from eclip.encoders.onnx import check_runtime
    from eclip.encoders.sentence import SentenceTransformerEncoder, default_cache_dir
    from eclip.encoders.static import StaticEncoder

    check_runtime(runtime)
    parsed = parse_model_spec(spec)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if parsed.kind == "minilm":
        return SentenceTransformerEncoder(DEFAULT_TEXT_MODEL, bundled_minilm_path(), device, batch_size, runtime, cache)
    if parsed.kind == "sentence":
        assert parsed.location is not None  # parse_model_spec sets a sentence folder's path
        return SentenceTransformerEncoder(parsed.raw, Path(parsed.location), device, batch_size, runtime, cache)
    if parsed.kind == "static":
        return StaticEncoder(
            parsed.raw,
            Path(parsed.location) if parsed.location else bundled_minilm_path(),
            default_cache_dir(),
            batch_size,
        )
    if runtime.startswith("onnx"):
        raise ModelError(
            f"--runtime {runtime} runs sentence-transformers text towers; {parsed.raw} runs in PyTorch (--runtime torch or auto)."
        )
    return OpenClipEncoder(parsed, device, batch_size)


#: Earlier name of :func:`load_encoder`.
load_text_encoder = load_encoder
