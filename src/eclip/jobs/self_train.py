"""``eclip dedupe --self-train``: a first label-free pass, the text encoder fine-tuned on that
pass's most certain matches (:mod:`eclip.train.pairs`), and a second pass with it.

Run directory ``OUT``: the second pass's outputs, as any ``eclip dedupe``, and::

    OUT/self-train/first-pass/   the first pass (a complete dedupe run directory)
    OUT/self-train/checkpoints/  while training
    OUT/self-train/model/        the fine-tuned sentence-transformers model

Each step resumes: the first pass reuses its cached embeddings, training goes on from its
last checkpoint, a finished model is not trained again, and the second pass embeds into
its own cache.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from eclip.catalog import load_catalog
from eclip.checks import check_range
from eclip.encoders.spec import bundled_minilm_path, parse_model_spec
from eclip.errors import EclipError
from eclip.jobs.dedupe import DedupeConfig, dedupe
from eclip.progress import console
from eclip.rundir import write_json
from eclip.train.pairs import PairTrainingConfig, fine_tune_on_pairs


@dataclass
class SelfTrainConfig:
    """Settings of the self-training step.

    Attributes:
        min_probability: a first-pass pair trains the encoder when it was matched with at
            least this match probability.
        max_pairs: at most this many pairs (a seeded sample of the certain ones); the cost
            of training is linear in it (about 20 pairs/s on 2 CPU cores with MiniLM).
        training: the fine-tuning settings (:class:`eclip.train.pairs.PairTrainingConfig`).
    """

    min_probability: float = 0.9
    max_pairs: int = 4000
    training: PairTrainingConfig | None = None

    def __post_init__(self) -> None:
        check_range(self, "min_probability", 0.5, 1.0)
        check_range(self, "max_pairs", 2, None)


def _model_folder(cfg: DedupeConfig) -> Path:
    """The sentence-transformers folder of the run's model, or a one-line error."""
    if cfg.embeddings is not None:
        raise EclipError("--self-train embeds the catalog again with the trained model; leave out --embeddings")
    if cfg.image_col is not None or cfg.phash_col is not None:
        raise EclipError("--self-train fine-tunes the text encoder only; run it without --image-col and --phash-col")
    if cfg.match_model is not None:
        raise EclipError("--self-train learns from the label-free match probabilities; leave out --match-model")
    spec = parse_model_spec(cfg.model)
    if spec.kind == "minilm":
        return bundled_minilm_path()
    if spec.kind == "sentence" and spec.location is not None:
        return Path(spec.location)
    raise EclipError(
        f"--self-train fine-tunes a sentence-transformers text model (minilm, or --model FOLDER); "
        f"{cfg.model!r} is not one"
    )


def confident_pairs(run: Path, min_probability: float, max_pairs: int, seed: int = 0) -> pl.DataFrame:
    """The matched pairs of a dedupe run directory with ``match_probability >= min_probability``
    (a seeded sample of ``max_pairs`` when there are more), with the group of each pair
    (``id_a``, ``id_b``, ``match_probability``, ``group_id``)."""
    pairs = pl.read_parquet(run / "pairs.parquet", columns=["id_a", "id_b", "match_probability", "matched"])
    groups = pl.read_parquet(run / "groups.parquet", columns=["id", "group_id"])
    sure = pairs.filter(pl.col("matched") & (pl.col("match_probability") >= min_probability)).drop("matched")
    if sure.height > max_pairs:
        sure = sure.sample(max_pairs, seed=seed)
    return sure.join(groups.rename({"id": "id_a"}), on="id_a", how="left")


def dedupe_self_trained(
    catalog: str | Path, out: str | Path, cfg: DedupeConfig | None = None, st: SelfTrainConfig | None = None
) -> dict[str, Any]:
    """:func:`eclip.jobs.dedupe.dedupe` twice, the second time with a text encoder fine-tuned
    on the first pass's most certain matches (see the module docstring).

    Returns:
        The second pass's manifest, with ``self_training`` (the pairs it trained on, the
        training record, and the first pass's counts).

    Raises:
        EclipError: a model that is not a sentence-transformers text model, or options that
            self-training cannot honour (``--embeddings``, images, a match model); too few
            certain pairs to train on. Anything :func:`dedupe` raises.
    """
    cfg = cfg or DedupeConfig()
    st = st or SelfTrainConfig()
    out = Path(out)
    start = _model_folder(cfg)
    work = out / "self-train"
    console.print("[bold]self-training, first pass[/]: label-free dedupe with the starting model")
    first = dedupe(catalog, work / "first-pass", replace(cfg, cache_dir=None))
    sure = confident_pairs(work / "first-pass", st.min_probability, st.max_pairs)
    if sure.height < 2:
        raise EclipError(
            f"--self-train: the first pass matched only {sure.height} pair(s) with probability >= "
            f"{st.min_probability}; too few to train on (run without --self-train)"
        )
    cat = load_catalog(catalog, cfg.id_col, cfg.text_cols, cfg.image_col, cfg.sep, cfg.encoding)
    text = dict(zip(cat.ids, cat.texts))
    keys = np.unique(sure["group_id"].cast(pl.Utf8).to_numpy(), return_inverse=True)[1]
    console.print(f"[bold]self-training[/]: {sure.height:,} certain pairs in {keys.max() + 1:,} groups")
    about = {"first_pass": str(work / "first-pass"), "min_probability": st.min_probability}
    record = fine_tune_on_pairs(
        start,
        [text[x] for x in sure["id_a"]],
        [text[x] for x in sure["id_b"]],
        keys,
        work,
        st.training,
        about,
    )
    console.print("[bold]self-training, second pass[/]: dedupe with the fine-tuned model")
    manifest = dedupe(catalog, out, replace(cfg, model=str(work / "model"), cache_dir=None))
    manifest["self_training"] = {
        **record,
        "first_pass_counts": {k: first["counts"].get(k) for k in ("matched_pairs", "multi_row_groups")},
        "first_pass_method": first["matching"]["method_used"],
    }
    write_json(manifest, out / "manifest.json")
    return manifest
