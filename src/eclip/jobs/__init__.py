"""Jobs: one module per job of the spine, each wiring the concept packages together and writing
a run directory (Parquet, .npy and ``manifest.json``)::

    catalog -> encoders -> index -> matcher | cluster | classify -> (evaluation) -> report

Each module holds its job function with its config dataclass beside it; :mod:`eclip.jobs.run`
holds the plumbing every job shares, and :mod:`eclip.jobs.source` how a job gets its rows'
vectors. :mod:`eclip.api` re-exports the public names, and :mod:`eclip.cli` wraps them.

Importing this package imports no job: each name is read from its module when first used
(PEP 562), so ``eclip dedupe`` with a static model never imports PyTorch (0.7 GiB). A job
function named like its module (``dedupe``, ``embed``, ...) is shadowed by the module once
that is imported: import it from its module, or use :mod:`eclip.api`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Public name -> the module that defines it.
_WHERE = {
    "AdultFilterConfig": "eclip.jobs.adult",
    "filter_adult": "eclip.jobs.adult",
    "ClassifyConfig": "eclip.jobs.classify",
    "classify": "eclip.jobs.classify",
    "ClusterConfig": "eclip.jobs.cluster",
    "cluster": "eclip.jobs.cluster",
    "DedupeConfig": "eclip.jobs.dedupe",
    "dedupe": "eclip.jobs.dedupe",
    "dedupe_against": "eclip.jobs.dedupe_against",
    "EmbedConfig": "eclip.jobs.embed",
    "embed": "eclip.jobs.embed",
    "evaluate": "eclip.jobs.evaluate",
    "evaluate_links": "eclip.jobs.evaluate",
    "evaluate_predictions": "eclip.jobs.evaluate",
    "index_add": "eclip.jobs.index",
    "index_build": "eclip.jobs.index",
    "index_merge": "eclip.jobs.index",
    "index_query": "eclip.jobs.index",
    "LabelSession": "eclip.jobs.learn",
    "learn": "eclip.jobs.learn",
    "propose": "eclip.jobs.learn",
    "LinkConfig": "eclip.jobs.link",
    "link": "eclip.jobs.link",
    "SelfTrainConfig": "eclip.jobs.self_train",
    "dedupe_self_trained": "eclip.jobs.self_train",
    "CatalogSource": "eclip.jobs.source",
    "train": "eclip.jobs.train",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "AdultFilterConfig",
    "CatalogSource",
    "ClassifyConfig",
    "ClusterConfig",
    "DedupeConfig",
    "SelfTrainConfig",
    "EmbedConfig",
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
    "link",
    "learn",
    "propose",
    "train",
]
