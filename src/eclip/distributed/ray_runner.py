"""Ray plumbing shared by the jobs: connect, fan the work out, follow it with one rich progress
bar, and turn a failure for good into one clear message.

Two shapes of work, each as Ray's documentation describes it:

* :meth:`RayRunner.map_actors`: Ray Data ``map_batches`` over a list of work items with a pool
  of actors ("Batch inference", docs.ray.io/en/latest/data/batch_inference.html), so that a
  model is loaded once per actor. Ray Data restarts an actor whose process died and retries
  its batch (actor ``max_restarts=-1``, ``max_task_retries=-1`` are its defaults).
* :meth:`RayRunner.map_tasks`: Ray Core tasks over row blocks, large inputs passed once
  through the object store (``ray.put``), each task retried ``max_retries`` times when its
  worker dies ("Task fault tolerance", docs.ray.io/en/latest/ray-core/fault_tolerance/tasks.html).

Work functions and actors live in the job modules; they must be importable on every node
(install eclip there), and the directories they write must be on a filesystem every node
sees (NFS, a mounted bucket), as with ``torchrun`` and ``index build --shard``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from eclip.errors import EclipError
from eclip.progress import progress_bar

#: Environment variables forwarded to Ray workers (the fault-injection hook of the tests).
FORWARDED_ENV = ("ECLIP_FAULT_AT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
#: The marker work functions put in front of a failure so the driver can name the rows.
_MARK = "eclip-work-item: "
_WHERE = re.compile(re.escape(_MARK) + r"([^\n]*)")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EclipError(
            "--ray needs Ray: install the extra with `pip install 'eclip[ray]'` (or `uv sync --extra ray`)."
        ) from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect to Ray once per process: an existing cluster (``address``: ``auto`` or
    ``HOST:PORT`` / ``ray://HOST:PORT``), or a local instance started here (``address``
    ``None`` or ``local``, with ``num_cpus`` CPUs, default all). Reuses a connection the
    process already has.

    Returns:
        The ``ray`` module.

    Raises:
        EclipError: Ray is not installed, or the cluster cannot be reached.
    """
    ray = _ray()
    if ray.is_initialized():
        return ray
    local = address in (None, "", "local")
    try:
        ray.init(
            address=None if local else address,
            num_cpus=num_cpus if local else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except ConnectionError as exc:
        raise EclipError(
            f"--ray {address}: cannot reach a Ray cluster there ({exc}); start one with "
            "`ray start --head`, or pass --ray without an address for a local instance."
        ) from None
    return ray


def _runtime_env() -> dict[str, Any] | None:
    """This process's :data:`FORWARDED_ENV` variables, for the workers of one job."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    return {"env_vars": env} if env else None


@contextlib.contextmanager
def named_work(what: str) -> Iterator[None]:
    """Run a work function's body so that any error leaves it as one ``RuntimeError`` naming
    the work item (``shard 3 (rows 12,289-16,384)``) and the reason, marked so that
    :class:`RayRunner` finds it inside Ray's wrapped error."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - named for the driver's one-line message
        raise RuntimeError(f"{_MARK}{what}: {type(exc).__name__}: {exc}") from exc


def _reason(exc: BaseException, fallback: str) -> str:
    """The work item and reason of a failure Ray wrapped, in one line."""
    text = str(exc)
    found = _WHERE.search(text)
    if found:
        return found.group(1).strip()
    last = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"{fallback}: {last[-1] if last else type(exc).__name__}"


@dataclass
class RayRunner:
    """Where and how wide a job runs on Ray.

    Attributes:
        address: ``None``/``local`` for a local Ray instance, ``auto`` or an address for an
            existing cluster.
        num_workers: actors (``map_actors``) or tasks running at once (``map_tasks``); ``None``:
            one per GPU when the cluster has GPUs, else one per CPU.
        max_retries: how many times a task whose worker died is retried.
        num_cpus: CPUs of a local instance (``None``: all of this machine's).
    """

    address: str | None = None
    num_workers: int | None = None
    max_retries: int = 3
    num_cpus: int | None = None

    def start(self) -> Any:
        """Connect (see :func:`connect`); returns the ``ray`` module."""
        return connect(self.address, self.num_cpus)

    def gpus(self) -> int:
        """GPUs in the cluster."""
        return int(self.start().cluster_resources().get("GPU", 0))

    def workers(self) -> int:
        """Actors or concurrent tasks: ``num_workers``, else one per GPU, else one per CPU."""
        if self.num_workers:
            return self.num_workers
        resources = self.start().cluster_resources()
        return max(1, int(resources.get("GPU", 0)) or int(resources.get("CPU", 1)))

    def describe(self) -> dict[str, Any]:
        """What a manifest records of the cluster: address, workers, nodes, CPUs, GPUs."""
        ray = self.start()
        resources = ray.cluster_resources()
        return {
            "address": self.address or "local",
            "workers": self.workers(),
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
            "cpus": int(resources.get("CPU", 0)),
            "gpus": int(resources.get("GPU", 0)),
            "max_retries": self.max_retries,
        }

    def map_actors(
        self,
        actor: type,
        items: list[dict[str, Any]],
        sizes: Sequence[int],
        label: str,
        ctor_kwargs: dict[str, Any],
        use_gpu: bool = True,
    ) -> list[dict[str, Any]]:
        """Run ``actor`` (a class: ``__init__(**ctor_kwargs)`` once per actor,
        ``__call__(batch) -> dict of lists`` per item) over ``items``, one item per batch, with
        :meth:`workers` actors and a GPU per actor when the cluster has GPUs.

        Args:
            items: one dict of scalars and lists per work item (e.g. one embedding shard).
            sizes: rows per item, for the progress bar.

        Returns:
            The rows the actors returned, in the order they finished.

        Raises:
            EclipError: an item failed for good (the message names it and the reason).
        """
        self.start()
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # after import: Ray Data sets its own levels then
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        gpu = 1 if use_gpu and self.gpus() else 0
        extra: dict[str, Any] = {"runtime_env": env} if (env := _runtime_env()) else {}
        dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
            actor,
            fn_constructor_kwargs=ctor_kwargs,
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=self.workers()),
            num_gpus=gpu,
            num_cpus=0 if gpu else 1,
            **extra,
        )
        out: list[dict[str, Any]] = []
        with progress_bar(f"{label} on Ray ({self.workers()} actor(s))", int(sum(sizes))) as (bar, task):
            try:
                for row in dataset.iter_rows():
                    out.append(row)
                    bar.advance(task, int(row.get("rows", 0)))
            except Exception as exc:  # noqa: BLE001 - Ray wraps the worker's error; say it in one line
                raise EclipError(
                    f"{label} stopped: {_reason(exc, 'a Ray worker failed')}. Finished work is kept: rerun the same command to resume."
                ) from None
        return out

    def map_tasks(
        self,
        fn: Callable[..., Any],
        blocks: Sequence[tuple[int, int]],
        label: str,
        shared: dict[str, Any] | None = None,
        use_gpu: bool = False,
    ) -> list[Any]:
        """Run ``fn(j, lo, hi, **shared)`` as one Ray task per row block ``j``, rows ``[lo, hi)``, at most
        :meth:`workers` at a time; ``shared`` values go to the object store once (numpy arrays
        are then read zero-copy by the tasks of a node).

        Returns:
            The results, in block order.

        Raises:
            EclipError: a block failed for good, after ``max_retries`` retries of a dead
                worker or at once for an error in eclip's code (the message names its rows).
        """
        ray = self.start()
        refs = {k: ray.put(v) for k, v in (shared or {}).items()}
        extra = {"runtime_env": env} if (env := _runtime_env()) else {}
        remote = ray.remote(fn).options(
            max_retries=self.max_retries, num_gpus=1 if use_gpu and self.gpus() else 0, num_cpus=1, **extra
        )
        results: list[Any] = [None] * len(blocks)
        todo = list(enumerate(blocks))
        running: dict[Any, int] = {}
        width = self.workers()
        with progress_bar(f"{label} on Ray ({width} task(s) at a time)", int(sum(hi - lo for lo, hi in blocks))) as (
            bar,
            task,
        ):
            while todo or running:
                while todo and len(running) < width:
                    j, (lo, hi) = todo.pop(0)
                    running[remote.remote(j, lo, hi, **refs)] = j
                done, _ = ray.wait(list(running), num_returns=1)
                j = running.pop(done[0])
                lo, hi = blocks[j]
                try:
                    results[j] = ray.get(done[0])
                except Exception as exc:  # noqa: BLE001 - one line naming the rows, not Ray's traceback
                    for ref in running:
                        ray.cancel(ref)
                    raise EclipError(
                        f"{label} stopped: rows {lo + 1:,}-{hi:,} failed ({_reason(exc, 'a Ray task failed')}). Rerun the same command to resume."
                    ) from None
                bar.advance(task, hi - lo)
        return results


def blocks_of(n: int, size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` row blocks of at most ``size`` rows covering ``0..n``."""
    return [(lo, min(n, lo + size)) for lo in range(0, n, max(1, size))]
