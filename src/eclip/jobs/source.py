"""Where a job's rows come from: a catalog embedded on the way, or an embeddings directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eclip.catalog import load_catalog
from eclip.checks import Runtime, check_choice
from eclip.encoders import DEFAULT_MODEL, Embeddings, load_embeddings, load_encoder
from eclip.errors import EclipError, RunDirError
from eclip.jobs.embed import EmbedConfig, embed
from eclip.jobs.run import StageTimer
from eclip.rundir import MANIFEST, read_json


@dataclass
class CatalogSource:
    """Where a job's rows, titles and images come from, and the model that embeds them (the
    fields shared by :class:`DedupeConfig` and :class:`ClusterConfig`; see
    :class:`EmbedConfig`)."""

    id_col: str = "id"
    text_cols: list[str] | None = None
    image_col: str | None = None
    image_root: Path | None = None
    allow_outside_root: bool = False
    allow_private_urls: bool = False
    model: str = DEFAULT_MODEL
    runtime: Runtime = "auto"
    sep: str | None = None
    encoding: str | None = None

    def __post_init__(self) -> None:
        check_choice(self, "runtime", Runtime)

    def embed_config(self, text_cols: list[str] | None = None, **settings: Any) -> EmbedConfig:
        """The :class:`EmbedConfig` that embeds this source (``text_cols`` overrides the
        configured columns; ``settings`` are further :class:`EmbedConfig` fields)."""
        return EmbedConfig(
            model=self.model,
            id_col=self.id_col,
            text_cols=text_cols if text_cols is not None else self.text_cols,
            image_col=self.image_col,
            image_root=self.image_root,
            allow_outside_root=self.allow_outside_root,
            allow_private_urls=self.allow_private_urls,
            runtime=self.runtime,
            sep=self.sep,
            encoding=self.encoding,
            **settings,
        )

    def inputs(self, source: str | Path, emb: Embeddings) -> dict[str, Any]:
        """The manifest's ``inputs`` of a job that read ``source`` through the embeddings
        ``emb`` (catalog, columns and image location as embedded)."""
        made = emb.manifest
        return {
            "source": str(Path(source).resolve()),
            "catalog": made.get("catalog"),
            "id_col": made.get("id_col", self.id_col),
            "text_cols": made.get("settings", {}).get("text_cols"),
            "image_col": made.get("settings", {}).get("image_col"),
            "image_root": str(Path(self.image_root).resolve()) if self.image_root else None,
            "allow_outside_root": self.allow_outside_root,
        }


def embeddings_dir(source: str | Path, work: Path, cfg: EmbedConfig) -> Path:
    """``source`` itself when it is an embeddings directory; else ``source`` is a catalog,
    embedded (resumably) into ``work`` with ``cfg``, and ``work`` is returned."""
    source = Path(source)
    if source.is_dir() and read_json(source / MANIFEST).get("job") == "embed":
        return source
    embed(source, work, cfg)
    return work


def index_source(
    embeddings: str | Path, vectors: str, emb: Embeddings | None = None
) -> tuple[Embeddings, np.ndarray, list[str], list[str] | None, dict[str, Any]]:
    """One array of an embeddings directory, the rows having that modality, their ids, their
    titles (re-read from the embedded catalog when it is still there) and provenance.
    ``emb``: the directory, when the caller has already loaded it."""
    emb = emb if emb is not None else load_embeddings(embeddings)
    try:
        arr, mask = emb.vectors(vectors)
    except KeyError:
        arr = None
    if arr is None:
        raise RunDirError(
            f"{embeddings} has no {vectors!r} vectors (it has {', '.join(emb.manifest.get('arrays', []))})."
        )
    rows = np.flatnonzero(mask)
    texts = None
    source = emb.manifest.get("catalog")
    if source and Path(source).exists():
        try:
            cat = load_catalog(
                source, emb.manifest.get("id_col", "id"), emb.manifest.get("settings", {}).get("text_cols")
            )
            texts = [cat.texts[i] for i in rows] if cat.ids == emb.ids else None
        except EclipError:
            texts = None
    extra = {
        "embeddings": str(Path(embeddings).resolve()),
        "vectors": vectors,
        "rows_left_out": int(len(mask) - len(rows)),
    }
    return emb, arr[rows], [emb.ids[i] for i in rows], texts, extra


def row_vectors(
    source: str | Path, out: Path, src: CatalogSource, vectors: str | None, timer: StageTimer
) -> tuple[Path, Embeddings, str, np.ndarray, np.ndarray]:
    """Embed ``source`` (or read it, when it is an embeddings directory): ``(emb_dir, emb,
    modality, x, present)`` with ``x`` the ``(n, d)`` float32 vectors of every row and
    ``present`` the ``(n,)`` bool rows that have them."""
    with timer("embed"):
        emb_dir = embeddings_dir(source, out / "embeddings", src.embed_config())
    with timer("load_embeddings"):
        emb = load_embeddings(emb_dir)
    modality = vectors or ("fused" if emb.image is not None else "text")
    try:
        x, present = emb.vectors(modality)
    except KeyError:
        raise EclipError(f"--vectors {modality!r} is not known; choose text, image or fused.") from None
    if x is None:
        raise RunDirError(
            f"{emb_dir} has no {modality!r} vectors (it has {', '.join(emb.manifest.get('arrays', []))}); "
            "image vectors need an open_clip model and --image-col."
        )
    return Path(emb_dir), emb, modality, x, present


def label_encoder(emb: Embeddings, emb_dir: Path, spec: str) -> Any:
    """The text encoder that embeds label prompts: ``spec``'s model, which must be the one
    that made ``emb`` (label and row vectors must share one space).

    Raises:
        ModelError: bad spec. RunDirError: ``spec`` names another model than the embeddings'.
    """
    made_by = emb.manifest.get("model", {})
    # a few prompts: torch needs no export, and gives the vectors onnx (fp32) gives; int8 differs
    encoder = load_encoder(spec, runtime=made_by.get("runtime", "torch"))
    if made_by and encoder.describe() != made_by:
        raise RunDirError(
            f"{emb_dir} was embedded with {made_by.get('name')} ({made_by.get('kind')}, weights {made_by.get('weights')}), "
            f"but --model {spec} is {encoder.describe().get('name')}; pass --model naming the model that made these embeddings."
        )
    return encoder
