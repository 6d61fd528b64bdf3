"""Jobs: one module per job of the spine, each wiring the concept packages together and writing
a run directory (Parquet, .npy and ``manifest.json``)::

    catalog -> encoders -> index -> matcher | cluster | classify -> (evaluation) -> report

Each module holds its job function with its config dataclass beside it; :mod:`eclip.jobs.run`
holds the plumbing every job shares, and :mod:`eclip.jobs.source` how a job gets its rows'
vectors. :mod:`eclip.api` re-exports the public names, and :mod:`eclip.cli` wraps them.
"""

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
