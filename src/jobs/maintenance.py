"""Periodic upkeep: a snapshot of the queue's health, for operators and alerts."""

from __future__ import annotations

import time

import orjson
from pydantic import BaseModel

from src.runner import JobContext, job

#: snapshot key beside arq's queue; readable with ``GET`` or ``jobs`` tools
STATS_KEY_PREFIX = "jobs:stats:"
_STATS_TTL_S = 3600


class QueueHealth(BaseModel):
    queue: str
    due: int
    deferred: int
    #: how long the oldest due job has been waiting; the first thing to alert on
    lag_s: float
    taken_at_ms: int


@job(timeout_s=30)
async def record_queue_health(ctx: JobContext, queue: str | None = None, lag_warn_s: float = 60) -> QueueHealth:
    """Counts of due and deferred jobs and the queue's lag, stored under ``jobs:stats:<queue>``."""
    if queue is None:
        from src.settings import get_settings  # settings imports this module for WorkerSettings

        queue = get_settings().queue_name
    now_ms = int(time.time() * 1000)
    async with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.zcount(queue, "-inf", now_ms)
        pipe.zcount(queue, f"({now_ms}", "+inf")
        pipe.zrange(queue, 0, 0, withscores=True)
        due, deferred, oldest = await pipe.execute()
    lag_s = max(now_ms - oldest[0][1], 0) / 1000 if due and oldest else 0.0
    health = QueueHealth(queue=queue, due=due, deferred=deferred, lag_s=lag_s, taken_at_ms=now_ms)
    await ctx.redis.set(STATS_KEY_PREFIX + queue, orjson.dumps(health.model_dump()), ex=_STATS_TTL_S)
    if lag_s > lag_warn_s:
        ctx.logger.warning("queue %s lags %.1fs behind (%d due, %d deferred)", queue, lag_s, due, deferred)
    return health
