"""Recycling a worker of a fleet (``fleet.py``): after it started ``max_jobs`` jobs, or once its resident memory
grew past ``max_memory_mib``, a worker drains as on SIGTERM (running jobs finish, none is taken) and exits with
:data:`RECYCLE_EXIT_CODE`, which tells its supervisor to start a fresh one at once. It is the usual cure for memory
that a job's libraries leak or fragment a little at a time (Celery's max-tasks-per-child, max-memory-per-child).

The limits are looked at four times a second, off the hot path: a worker taking many short jobs at once may start a
few more than ``max_jobs`` before it stops taking them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .running import RunningJobs

logger = logging.getLogger("hasten.worker")

#: how a recycled worker exits (``EX_TEMPFAIL``): its supervisor replaces it at once, without the crash backoff
RECYCLE_EXIT_CODE = 75
#: how often the limits are looked at
LOOK_EVERY_S = 0.25
_MIB = 1024 * 1024


@dataclass(slots=True)
class Recycler:
    """A worker's recycling limits (None: no limit) and, once one was reached, why it is recycled."""

    max_jobs: int | None = None
    max_memory_mib: int | None = None
    reason: str | None = None

    async def watch(self, running: RunningJobs, drain: Callable[[str], None]) -> None:
        """Until a limit is reached; then ``drain(reason)``, once."""
        while self.reason is None:
            await asyncio.sleep(LOOK_EVERY_S)
            self.reason = self.reached(running.started)
        logger.info("recycling this worker: %s; it drains, and its supervisor starts a fresh one", self.reason)
        drain(self.reason)

    def reached(self, started: int) -> str | None:
        """Which limit a worker that started ``started`` jobs has reached, if any."""
        if self.max_jobs is not None and started >= self.max_jobs:
            return f"{started} jobs started, limit {self.max_jobs}"
        if self.max_memory_mib is not None and (rss := rss_mib()) > self.max_memory_mib:
            return f"memory at {rss:.0f} MiB, limit {self.max_memory_mib} MiB"
        return None


def rss_mib() -> float:
    """This process's resident memory in MiB: now, from ``/proc/self/statm`` (Linux); elsewhere its peak, which
    never goes down (``getrusage`` reports KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / _MIB
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / _MIB if sys.platform == "darwin" else peak / 1024
