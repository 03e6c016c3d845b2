"""WorkerSettings for the Redis Cluster tests: the project's settings (``JOBS_REDIS_CLUSTER``, ``JOBS_REDIS_URL``
naming one node, ``JOBS_QUEUE_NAME`` a tagged queue), sample jobs and a cron entry every second."""

from __future__ import annotations

import asyncio
import os

from src.runner import Backoff, JobContext, cron, job, launch
from src.runner.keyspace import hash_tag
from src.settings import Settings
from tests.sample_jobs import add, flaky, nap, refuse

launch.install()

_settings = Settings()


@job(name="counted", retry=Backoff(max_tries=5, base_s=0.1))
async def counted(ctx: JobContext, pause_s: float) -> None:
    """Counts its runs per job id in a hash of the job's slot (``<tag>runs``), then pauses (a stand-in for I/O)."""
    await ctx.redis.hincrby(hash_tag(ctx.job_id) + "runs", ctx.job_id, 1)
    await asyncio.sleep(pause_s)


@job(name="cluster_tick")
async def cluster_tick(ctx: JobContext) -> None:
    """Notes which tick ran (its job id, which carries the queue's tag) and in which process."""
    await ctx.redis.rpush("cluster-ticks", f"{ctx.job_id} {os.getpid()}")


class WorkerSettings:
    functions = (add, flaky, nap, refuse, counted, cluster_tick)
    cron_entries = (cron("every-second", "* * * * * *", cluster_tick),)
    redis_settings = _settings.redis_settings()
    queue_name = _settings.queue_name
    max_jobs = _settings.max_jobs
    lease_s = 2.0
    shutdown_grace_s = 5.0
    poll_delay = 0.2
