"""The Python API: each function runs one job of the spine and writes a run directory.

    catalog -> encoders -> index -> matcher | cluster | classify -> (evaluation) -> report

This module is a facade: the jobs live in :mod:`eclip.jobs`, one module each, with their
config dataclasses. The CLI (:mod:`eclip.cli`) is a thin layer over the same functions.

Example::

    from eclip import api

    manifest = api.dedupe("catalog.csv", "runs/dedupe", api.DedupeConfig(threshold=0.7))
"""

from eclip.errors import EclipError
from eclip.evaluation import binary_gold, read_calibration
from eclip.jobs import (
    AdultFilterConfig,
    CatalogSource,
    ClassifyConfig,
    ClusterConfig,
    DedupeConfig,
    EmbedConfig,
    LabelSession,
    LinkConfig,
    SelfTrainConfig,
    classify,
    cluster,
    dedupe,
    dedupe_against,
    dedupe_self_trained,
    embed,
    evaluate,
    evaluate_links,
    evaluate_predictions,
    filter_adult,
    index_add,
    index_build,
    index_merge,
    index_query,
    learn,
    link,
    propose,
    train,
)
from eclip.matcher import DEFAULT_METHOD, DEFAULT_THRESHOLD

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_THRESHOLD",
    "AdultFilterConfig",
    "CatalogSource",
    "ClassifyConfig",
    "ClusterConfig",
    "DedupeConfig",
    "EclipError",
    "EmbedConfig",
    "binary_gold",
    "classify",
    "cluster",
    "dedupe",
    "dedupe_against",
    "dedupe_self_trained",
    "embed",
    "evaluate",
    "evaluate_links",
    "evaluate_predictions",
    "filter_adult",
    "index_add",
    "index_build",
    "index_merge",
    "index_query",
    "LabelSession",
    "LinkConfig",
    "SelfTrainConfig",
    "link",
    "learn",
    "propose",
    "read_calibration",
    "train",
]
