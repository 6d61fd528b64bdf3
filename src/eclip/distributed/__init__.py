"""Running eclip's jobs beyond one process: a Ray cluster, or a local Ray instance.

Only :mod:`eclip.distributed.ray_runner` imports Ray, and only when ``--ray`` is given; Ray is
the optional extra ``ray``.
"""

from eclip.distributed.ray_runner import RayRunner, connect

__all__ = ["RayRunner", "connect"]
