"""The Python API: each function runs one job of the spine and writes a run directory.

    catalog -> encoders -> index -> matcher | cluster | classify -> (evaluation) -> report

This module is a facade: the jobs live in :mod:`eclip.jobs`, one module each, with their
config dataclasses. The CLI (:mod:`eclip.cli`) is a thin layer over the same functions.

Example::

    from eclip import api

    manifest = api.dedupe("catalog.csv", "runs/dedupe", api.DedupeConfig(threshold=0.7))

Names are imported when first used (PEP 562): ``from eclip import api`` costs nothing, and a
job imports only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eclip.errors import EclipError
    from eclip.evaluation import binary_gold, read_calibration
    from eclip.jobs.adult import AdultFilterConfig, filter_adult
    from eclip.jobs.classify import ClassifyConfig, classify
    from eclip.jobs.cluster import ClusterConfig, cluster
    from eclip.jobs.dedupe import DedupeConfig, dedupe
    from eclip.jobs.dedupe_against import dedupe_against
    from eclip.jobs.embed import EmbedConfig, embed
    from eclip.jobs.evaluate import evaluate, evaluate_links, evaluate_predictions
    from eclip.jobs.index import index_add, index_build, index_merge, index_query
    from eclip.jobs.learn import LabelSession, learn, propose
    from eclip.jobs.link import LinkConfig, link
    from eclip.jobs.self_train import SelfTrainConfig, dedupe_self_trained
    from eclip.jobs.source import CatalogSource
    from eclip.jobs.train import train
    from eclip.matcher import DEFAULT_METHOD, DEFAULT_THRESHOLD

#: Public name -> the module that defines it.
_WHERE = {
    "EclipError": "eclip.errors",
    "binary_gold": "eclip.evaluation",
    "read_calibration": "eclip.evaluation",
    "AdultFilterConfig": "eclip.jobs.adult",
    "CatalogSource": "eclip.jobs.source",
    "ClassifyConfig": "eclip.jobs.classify",
    "ClusterConfig": "eclip.jobs.cluster",
    "DedupeConfig": "eclip.jobs.dedupe",
    "EmbedConfig": "eclip.jobs.embed",
    "LabelSession": "eclip.jobs.learn",
    "LinkConfig": "eclip.jobs.link",
    "SelfTrainConfig": "eclip.jobs.self_train",
    "classify": "eclip.jobs.classify",
    "cluster": "eclip.jobs.cluster",
    "dedupe": "eclip.jobs.dedupe",
    "dedupe_against": "eclip.jobs.dedupe_against",
    "dedupe_self_trained": "eclip.jobs.self_train",
    "embed": "eclip.jobs.embed",
    "evaluate": "eclip.jobs.evaluate",
    "evaluate_links": "eclip.jobs.evaluate",
    "evaluate_predictions": "eclip.jobs.evaluate",
    "filter_adult": "eclip.jobs.adult",
    "index_add": "eclip.jobs.index",
    "index_build": "eclip.jobs.index",
    "index_merge": "eclip.jobs.index",
    "index_query": "eclip.jobs.index",
    "learn": "eclip.jobs.learn",
    "link": "eclip.jobs.link",
    "propose": "eclip.jobs.learn",
    "train": "eclip.jobs.train",
    "DEFAULT_METHOD": "eclip.matcher",
    "DEFAULT_THRESHOLD": "eclip.matcher",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


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
