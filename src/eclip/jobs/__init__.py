"""Jobs: one module per job of the spine, each wiring the concept packages together and writing
a run directory (Parquet, .npy and ``manifest.json``)::

    catalog -> encoders -> index -> matcher | cluster | classify -> (evaluation) -> report

Each module holds its job function with its config dataclass beside it; :mod:`eclip.jobs.run`
holds the plumbing every job shares, and :mod:`eclip.jobs.source` how a job gets its rows'
vectors. :mod:`eclip.api` re-exports the public names, and :mod:`eclip.cli` wraps them.

Importing this package imports no job (a static ``eclip dedupe`` never imports PyTorch):
import a job from its module (``from eclip.jobs.dedupe import dedupe``), or use the facade
:mod:`eclip.api`, which imports each name when it is first used.
"""
