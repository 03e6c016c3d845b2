"""Aborting running jobs: ``JobHandle.abort()`` (and arq's ``Job.abort()``) add the job id to arq's abort set (on a
cluster, the queue's own: ``keyspace.abort_key``); the worker running the job cancels it, for reason "abort", and
takes the id out of the set."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from . import constants as k
from .outage import REDIS_DOWN, Outage, RedisHealth, reassert_cancellation
from .running import RunningJobs

#: how often running jobs are checked against arq's abort set (only while jobs run)
ABORT_CHECK_EVERY_S = 0.05


async def watch_aborts(
    redis: Redis, running: RunningJobs, health: RedisHealth | None = None, abort_set: str = k.abort_jobs_ss
) -> None:
    """Forever: cancel the running jobs listed in ``abort_set``."""
    outage = Outage("watching aborts", health)
    while True:
        await asyncio.sleep(ABORT_CHECK_EVERY_S)
        if not len(running):
            continue
        try:
            members = await redis.zrange(abort_set, 0, -1)
            hits = [job_id for job_id in (m.decode(errors="backslashreplace") for m in members) if job_id in running]
            for job_id in hits:
                running.cancel(job_id, "abort")
            if hits:
                await redis.zrem(abort_set, *hits)
            reassert_cancellation()
        except REDIS_DOWN as e:
            await outage.failed(e)
        else:
            outage.ok()
