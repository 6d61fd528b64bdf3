"""Run plumbing shared by every job: the run directory, the stage clock, versions, manifests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from eclip.rundir import MANIFEST, fault_point, lock_dir, unlock_dir, write_json

#: Packages whose versions every manifest records (absent ones are left out).
RECORDED_PACKAGES = ("eclip", "faiss-cpu", "faiss-gpu-cu12", "torch", "sentence-transformers", "polars", "scikit-learn")


class StageTimer:
    """Wall-clock seconds per pipeline stage: ``with timer("embed"): ...``.

    Attributes:
        seconds: stage name -> seconds (float, rounded to ms), in the order stages ran.
        memory: stage name -> ``{"rss_gib", "peak_gib"}``: the process's resident memory when
            the stage ended and its peak so far (``VmRSS`` and ``VmHWM`` of
            ``/proc/self/status``; absent where there is no ``/proc``), so the stage whose
            peak jumps is the one that needs the memory.
        started: ``time.perf_counter()`` when the timer was made (the job's start).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.memory: dict[str, dict[str, float]] = {}
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - t0, 3)
        used = memory_gib()
        if used:
            self.memory[stage] = used
        fault_point(stage)

    def elapsed(self) -> float:
        """Seconds since the job started."""
        return time.perf_counter() - self.started

    def timings(self) -> dict[str, float]:
        """Every stage's seconds plus ``total`` (the manifest's ``timings_s``)."""
        return {**self.seconds, "total": round(self.elapsed(), 3)}


def memory_gib() -> dict[str, float]:
    """This process's resident memory now and at its peak, GiB (``{"rss_gib", "peak_gib"}``),
    from ``/proc/self/status``; ``{}`` where it cannot be read (not Linux)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    kib = {
        k: int(v.split()[0])
        for k, _, v in (line.partition(":") for line in status.splitlines())
        if k in ("VmRSS", "VmHWM")
    }
    if len(kib) < 2:
        return {}
    return {"rss_gib": round(kib["VmRSS"] / 2**20, 3), "peak_gib": round(kib["VmHWM"] / 2**20, 3)}


def start_run(out: str | Path) -> tuple[Path, StageTimer]:
    """Create the run directory ``out`` (and its parents), lock it against other writers
    (:func:`eclip.rundir.lock_dir`) and start the job's clock.

    Raises:
        RunDirError: another process is writing ``out``.
    """
    out = Path(out)
    lock_dir(out)  # released by write_manifest, or when the process ends
    return out, StageTimer()


def created() -> str:
    """The manifest's ``created`` timestamp: local time with its UTC offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def versions(*extra: str) -> dict[str, str]:
    """Installed versions of :data:`RECORDED_PACKAGES` and of ``extra`` packages."""
    out = {}
    for pkg in (*RECORDED_PACKAGES, *extra):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - absent optional packages
            continue
    return out


def write_manifest(manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write ``out/manifest.json`` atomically and release the run's lock; returns ``manifest``."""
    write_json(manifest, out / MANIFEST)
    unlock_dir(out)
    return manifest
