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
    # for type checkers: the names __getattr__ gives
    from eclip.errors import EclipError  # noqa: F401
    from eclip.evaluation import binary_gold, read_calibration  # noqa: F401
    from eclip.jobs.adult import AdultFilterConfig, filter_adult  # noqa: F401
    from eclip.jobs.classify import ClassifyConfig, classify  # noqa: F401
    from eclip.jobs.cluster import ClusterConfig, cluster  # noqa: F401
    from eclip.jobs.dedupe import DedupeConfig, dedupe  # noqa: F401
    from eclip.jobs.dedupe_against import dedupe_against  # noqa: F401
    from eclip.jobs.embed import EmbedConfig, embed  # noqa: F401
    from eclip.jobs.evaluate import evaluate, evaluate_links, evaluate_predictions  # noqa: F401
    from eclip.jobs.index import index_add, index_build, index_merge, index_query  # noqa: F401
    from eclip.jobs.learn import LabelSession, learn, propose  # noqa: F401
    from eclip.jobs.link import LinkConfig, link  # noqa: F401
    from eclip.jobs.self_train import SelfTrainConfig, dedupe_self_trained  # noqa: F401
    from eclip.jobs.source import CatalogSource  # noqa: F401
    from eclip.jobs.train import train  # noqa: F401
    from eclip.matcher import DEFAULT_METHOD, DEFAULT_THRESHOLD  # noqa: F401

#: Module -> the public names it defines (each imported when first used).
_NAMES = {
    "eclip.errors": ("EclipError",),
    "eclip.evaluation": ("binary_gold", "read_calibration"),
    "eclip.jobs.adult": ("AdultFilterConfig", "filter_adult"),
    "eclip.jobs.source": ("CatalogSource",),
    "eclip.jobs.classify": ("ClassifyConfig", "classify"),
    "eclip.jobs.cluster": ("ClusterConfig", "cluster"),
    "eclip.jobs.dedupe": ("DedupeConfig", "dedupe"),
    "eclip.jobs.embed": ("EmbedConfig", "embed"),
    "eclip.jobs.learn": ("LabelSession", "learn", "propose"),
    "eclip.jobs.link": ("LinkConfig", "link"),
    "eclip.jobs.self_train": ("SelfTrainConfig", "dedupe_self_trained"),
    "eclip.jobs.dedupe_against": ("dedupe_against",),
    "eclip.jobs.evaluate": ("evaluate", "evaluate_links", "evaluate_predictions"),
    "eclip.jobs.index": ("index_add", "index_build", "index_merge", "index_query"),
    "eclip.jobs.train": ("train",),
    "eclip.matcher": ("DEFAULT_METHOD", "DEFAULT_THRESHOLD"),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = sorted(_WHERE)
