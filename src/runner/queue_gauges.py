"""The queue gauges, read from Redis at scrape time by the one process that serves the endpoint (a worker, or a
fleet's supervisor), not by every worker: a custom prometheus-client collector over ``queue_stats.py``.

- ``hasten_queue_depth{queue,state}``: queued (due, waiting), running, deferred, retrying, held (by a limit), dead;
- ``hasten_jobs_held{queue,function}``: jobs held aside by their function's limits until a slot frees, and
  ``hasten_limit_running{queue,function}``: jobs holding a slot of a concurrency limit (``limits.py``);
- ``hasten_queue_oldest_due_age_seconds{queue}``: how long the oldest due job not running has waited (0: none);
- ``hasten_dead_letters{queue}``: jobs in the dead-letter queue;
- ``hasten_workers_alive{queue}``: worker processes whose heartbeat is alive (``worker_registry.py``), all hosts;
- ``hasten_cron_last_success_timestamp_seconds{entry,function}``: when each cron entry's last run succeeded
  (written by ``scripts/finish.lua`` into the entry's state; no series for an entry that never succeeded);
- ``hasten_queue_stats_up``: 1 when the last read succeeded, 0 when Redis did not answer it (the gauges above
  are then left out rather than shown stale).

Several hosts serving endpoints for one queue report the same values: aggregate them with ``max``, or turn the
gauges off on all hosts but one (``JOBS_METRICS_QUEUE_GAUGES=false``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from .cron_state import CronSuccess, cron_successes
from .limits import LimitRow, limit_rows
from .outage import REDIS_DOWN
from .queue_stats import QueueStats, queue_stats

logger = logging.getLogger("hasten.metrics")

QUEUE_DEPTH = "hasten_queue_depth"
OLDEST_DUE_AGE = "hasten_queue_oldest_due_age_seconds"
DEAD_LETTERS = "hasten_dead_letters"
WORKERS_ALIVE = "hasten_workers_alive"
CRON_LAST_SUCCESS = "hasten_cron_last_success_timestamp_seconds"
STATS_UP = "hasten_queue_stats_up"
#: queue depth states, in queue_stats's words
STATES = ("queued", "running", "deferred", "retrying", "held", "dead")
JOBS_HELD = "hasten_jobs_held"
LIMIT_RUNNING = "hasten_limit_running"
#: a scrape waits at most this long for Redis; Prometheus's own scrape timeout is 10 s by default
READ_TIMEOUT_S = 3.0


@dataclass(slots=True)
class _Snapshot:
    ok: bool = False
    stats: list[QueueStats] = field(default_factory=list)
    cron: list[CronSuccess] = field(default_factory=list)
    limits: dict[str, list[LimitRow]] = field(default_factory=dict)


class QueueGauges(Collector):
    """Call :meth:`refresh` (async, bounded) before each scrape; :meth:`collect` yields what it read."""

    def __init__(self, redis: Redis, queues: Sequence[str]) -> None:
        self._redis = redis
        self._queues = tuple(queues)
        self._snapshot = _Snapshot()

    async def refresh(self) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                stats = [await queue_stats(self._redis, queue, minutes=0) for queue in self._queues]
                cron = await cron_successes(self._redis)
                limits = {queue: await limit_rows(self._redis, queue) for queue in self._queues}
        except (*REDIS_DOWN, TimeoutError) as e:
            logger.warning("metrics: queue gauges not read from Redis (%s: %s)", type(e).__name__, e)
            self._snapshot = _Snapshot()
            return
        self._snapshot = _Snapshot(True, stats, cron, limits)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        snap = self._snapshot
        yield GaugeMetricFamily(STATS_UP, "1 when the queue gauges were read from Redis for this scrape.",
                                value=int(snap.ok))  # fmt: skip
        if not snap.ok:
            return
        depth = GaugeMetricFamily(QUEUE_DEPTH, "Jobs in a queue, by state.", labels=("queue", "state"))
        oldest = GaugeMetricFamily(
            OLDEST_DUE_AGE, "Age of the oldest due job not yet started (0 when none waits).", labels=("queue",)
        )
        dead = GaugeMetricFamily(DEAD_LETTERS, "Jobs in the dead-letter queue.", labels=("queue",))
        workers = GaugeMetricFamily(WORKERS_ALIVE, "Worker processes with a live heartbeat.", labels=("queue",))
        for s in snap.stats:
            for state in STATES:
                depth.add_metric((s.queue, state), getattr(s, state))
            oldest.add_metric((s.queue,), s.oldest_due_age_s or 0.0)
            dead.add_metric((s.queue,), s.dead)
            workers.add_metric((s.queue,), len(s.workers))
        cron = GaugeMetricFamily(
            CRON_LAST_SUCCESS, "When a cron entry's last run succeeded (Unix time).", labels=("entry", "function")
        )
        for c in snap.cron:
            cron.add_metric((c.entry, c.function), c.at_s)
        held = GaugeMetricFamily(JOBS_HELD, "Jobs held aside by their function's limits.", labels=("queue", "function"))
        slots = GaugeMetricFamily(
            LIMIT_RUNNING, "Jobs holding a slot of their function's concurrency limit.", labels=("queue", "function")
        )
        for queue, rows in snap.limits.items():
            for row in rows:
                if row.key is None:  # the function's total (never a label per key: keys are unbounded)
                    held.add_metric((queue, row.function), row.held)
                    slots.add_metric((queue, row.function), row.running)
        yield from (depth, oldest, dead, workers, cron, held, slots)
