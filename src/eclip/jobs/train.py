"""The ``train`` job: e-CLIP encoders trained on a catalog's own images and titles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eclip.catalog import load_catalog
from eclip.catalog.images import ImageSettings
from eclip.errors import CatalogError


def train(
    catalog: str | Path,
    out: str | Path,
    cfg: Any = None,
    id_col: str = "id",
    text_cols: list[str] | None = None,
    image_col: str = "image",
    image_root: Path | None = None,
    allow_outside_root: bool = False,
    resume: str | None = None,
) -> dict[str, Any]:
    """Train an e-CLIP model on a catalog's images and titles; see :mod:`eclip.train.loop`.

    Returns:
        The model card; the model folder is ``out/model`` (``--model out/model`` loads it).

    Raises:
        CatalogError: bad catalog or columns. EclipError: bad settings. RunDirError: a run
            directory with checkpoints and no ``resume``, or a checkpoint of other settings.
    """
    from eclip.train import TrainConfig
    from eclip.train import train as run_train

    cfg = cfg or TrainConfig()
    if cfg.image_only and text_cols is None:
        text_cols = [image_col]  # titles are not read; any column satisfies the catalog check
    cat = load_catalog(catalog, id_col, text_cols, image_col)
    for col in (cfg.zeroshot_col, cfg.group_col):
        if col is not None and col not in cat.table.columns:
            raise CatalogError(f"{catalog}: no column {col!r} (columns: {', '.join(cat.table.columns)}).")
    root = Path(image_root) if image_root else cat.root
    images = ImageSettings(root=root, cache_dir=Path(out) / "image_cache", allow_outside_root=allow_outside_root)
    return run_train(cat, images, out, cfg, resume)
