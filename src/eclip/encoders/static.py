"""Static text embeddings: a model2vec model distilled offline from a sentence transformer.

model2vec (Tulkens and van Dongen, 2024; https://github.com/MinishLab/model2vec) runs every
token of the teacher's vocabulary through the teacher once, reduces the token vectors by PCA
and weights them by Zipf's law (SIF); a title's vector is then the mean of its tokens'
vectors, with no transformer at all. It embeds tens of thousands of titles per second on a
CPU, at some cost in quality (docs/benchmarks/embedding.md: the F1 it costs on the dev catalogs).

The distilled model is made once per teacher (``model2vec.distill``, from the local folder,
no network) and kept in ``<cache>/static/<teacher digest>-pca<d>``, written atomically, so that
later runs load it in a second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from eclip.encoders.sentence import weights_digest
from eclip.encoders.spec import is_static_folder
from eclip.errors import ModelError
from eclip.progress import console
from eclip.rundir import umask_mode

#: PCA dimensions of a distilled model (model2vec's default).
STATIC_DIMS = 256


def distill_static(teacher: Path, out: Path, pca_dims: int = STATIC_DIMS) -> Path:
    """Distil a model2vec model from the sentence-transformers folder ``teacher`` into
    ``out`` (atomically: a temporary folder, then a rename).

    Raises:
        ModelError: model2vec's distillation extras are missing, or distillation fails.
    """
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise ModelError(
            f"distilling a static model needs model2vec and skeletoken ({exc}); reinstall eclip (uv sync)."
        ) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model = distill(model_name=str(teacher), pca_dims=pca_dims, device="cpu")
        model.save_pretrained(str(tmp))
        if out.exists():
            shutil.rmtree(out)
        umask_mode(tmp)
        os.replace(tmp, out)
    except Exception as exc:  # noqa: BLE001 - any distillation failure becomes one message
        raise ModelError(f"cannot distil a static model from {teacher}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@contextlib.contextmanager
def tokenizer_threads() -> Iterator[None]:
    """Let Hugging Face ``tokenizers`` batch-encode on every core for the block
    (``TOKENIZERS_PARALLELISM``, which ``eclip`` otherwise sets to ``false`` for forked
    workers), then put the setting back. Measured: 1.2x the static model's titles/s on 2 cores."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


class StaticEncoder:
    """A model2vec static model (text only).

    Args:
        name: the name recorded in manifests (the model spec, e.g. ``minilm-static``).
        folder: a saved model2vec model, or a sentence-transformers folder to distil one from.
        cache_dir: where distilled models are kept (``<cache_dir>/static/...``).
        batch_size: titles per batch.

    Raises:
        ModelError: the folder is neither, or loading or distilling fails.
    """

    has_images = False
    image_transform: Callable[[Any], Any] | None = None
    runtime = "model2vec"

    def __init__(self, name: str, folder: Path, cache_dir: Path, batch_size: int = 1024) -> None:
        if is_static_folder(folder):
            self.distilled_from = None
            path = folder
        else:
            teacher = weights_digest(folder)
            self.distilled_from = {"folder": str(folder), "weights": teacher}
            path = Path(cache_dir) / "static" / f"{teacher}-pca{STATIC_DIMS}"
            if not is_static_folder(path):
                console.print(
                    f"distilling a static model from {folder} into {path} (once per machine; about a minute on 2 cores)"
                )
                distill_static(folder, path)
        try:
            from model2vec import StaticModel

            self._model = StaticModel.from_pretrained(str(path), force_download=False)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: cannot load as a model2vec static model: {exc}") from exc
        self.name = name
        self.folder = path
        self.batch_size = max(batch_size, 1024)
        self.dim = int(self._model.dim)
        self._digest = weights_digest(path)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``: ``(len(texts), dim)`` float32, L2-normalised rows (a title with no
        known token gets a zero row)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with tokenizer_threads():  # tokenising is most of a static model's work: use every core
            out = np.asarray(
                self._model.encode(list(texts), batch_size=self.batch_size, use_multiprocessing=False),
                dtype=np.float32,
            )
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.where(norms > 0, norms, 1))

    def encode_images(self, pixels: Any) -> np.ndarray:
        """Text-only model: always raises :class:`ModelError`."""
        raise ModelError(
            f"{self.name} is a text-only static model; pass an open_clip model (--model openclip:ARCH:...) to embed images."
        )

    def describe(self) -> dict[str, Any]:
        out = {"kind": "model2vec", "name": self.name, "dim": self.dim, "weights": self._digest}
        return out | {"distilled_from": self.distilled_from} if self.distilled_from else out
