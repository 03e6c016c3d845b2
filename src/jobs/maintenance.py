"""Periodic upkeep: a snapshot of the queue's health, for operators and alerts."""

from __future__ import annotations

import time

import orjson
from pydantic import BaseModel

from src.runner import JobContext, job
from src.runner.queue_stats import queue_stats

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
    """Counts of due and deferred jobs and the queue's lag (``queue_stats``), stored under ``jobs:stats:<queue>``."""
    if queue is None:
        from src.settings import get_settings  # settings imports this module for WorkerSettings

        queue = get_settings().queue_name
    stats = await queue_stats(ctx.redis, queue, minutes=0)
    # due: waiting to run (running jobs are not lagging); deferred: due later, retries after a backoff included
    health = QueueHealth(
        queue=queue,
        due=stats.queued,
        deferred=stats.deferred + stats.retrying,
        lag_s=stats.oldest_due_age_s or 0.0,
        taken_at_ms=int(time.time() * 1000),
    )
    await ctx.redis.set(STATS_KEY_PREFIX + queue, orjson.dumps(health.model_dump()), ex=_STATS_TTL_S)
    if health.lag_s > lag_warn_s:
        ctx.logger.warning(
            "queue %s lags %.1fs behind (%d due, %d deferred)", queue, health.lag_s, health.due, health.deferred
        )
    return health
