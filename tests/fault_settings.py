"""WorkerSettings for the process-level fault tests: `arq tests.fault_settings.WorkerSettings` (our worker)."""

from __future__ import annotations

import asyncio
import os
import time

from arq.connections import RedisSettings

from src.runner import Backoff, JobContext, job, launch

launch.install()


@job(name="long_nap", retry=Backoff(max_tries=3, base_s=0.1))
async def long_nap(ctx: JobContext, seconds: float) -> int:
    """Records which process started it and when, then sleeps."""
    await ctx.redis.rpush(f"starts:{ctx.job_id}", f"{os.getpid()} {time.time()}")
    await asyncio.sleep(seconds)
    return os.getpid()


@job(name="tick", retry=Backoff(max_tries=5, base_s=0.1))
async def tick(ctx: JobContext, pause_s: float) -> None:
    """Counts its runs per job id and notes the run in the list ``started:<pid>`` of its process, in one
    transaction (a kill between two writes would leave a run no process owns), then pauses (a stand-in for I/O)."""
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.hincrby("runs", ctx.job_id, 1)
        pipe.rpush(f"started:{os.getpid()}", ctx.job_id)
        await pipe.execute()
    await asyncio.sleep(pause_s)


class WorkerSettings:
    functions = (long_nap, tick)
    redis_settings = RedisSettings.from_dsn(os.environ.get("JOBS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    lease_s = float(os.environ.get("JOBS_LEASE_S", "1"))
    shutdown_grace_s = float(os.environ.get("JOBS_SHUTDOWN_GRACE_S", "10"))
    poll_delay = 0.2
