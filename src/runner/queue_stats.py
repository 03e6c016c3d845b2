"""What a queue holds and how fast it moves, read from Redis in one round trip: for ``hasten status``, the
dashboard and the metrics' queue gauges (one reader, not every worker).

- **queued**: due and waiting; **running**: held by a live worker (the worker registry's count, so jobs a stock arq
  worker runs count as queued); **deferred**: enqueued for later; **retrying**: waiting out a retry's backoff;
  **dead**: in the dead-letter queue.
- Deferred and retrying are told apart by the first :data:`SCAN_ROWS` jobs due later; beyond that the split is
  scaled from them and ``estimated`` says so. The oldest due job's age skips running jobs among the first
  :data:`SCAN_ROWS` due rows. Every read stays bounded at a million jobs.
- Throughput comes from per-minute outcome counts the workers write with the outcomes (``scripts/finish.lua``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from . import constants as k
from .finish import OUTCOME_KINDS
from .scripts import script
from .worker_registry import WorkerRecord, live_workers

#: rows a stats read examines at most, in each of its two scans
SCAN_ROWS = 2000


@dataclass(slots=True)
class Minute:
    """Tries ended in one minute, by how (``finish.OUTCOME_KINDS``; ``start_ms`` is its first millisecond)."""

    start_ms: int
    complete: int = 0
    failed: int = 0
    retried: int = 0
    aborted: int = 0
    dead: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.dead + self.aborted


@dataclass(slots=True)
class QueueStats:
    queue: str
    queued: int
    running: int
    deferred: int
    retrying: int
    dead: int
    #: age of the oldest due job not running, None when none waits (or all examined rows run)
    oldest_due_age_s: float | None
    #: the deferred/retrying split was scaled from a sample
    estimated: bool
    #: the last minutes, oldest first; the current minute last (partial)
    minutes: list[Minute] = field(default_factory=list)
    workers: list[WorkerRecord] = field(default_factory=list)
    #: when these counts were read (epoch ms)
    read_ms: int = 0
    #: when the queue was paused (epoch ms; pausing.py), None if it is not
    paused_since_ms: int | None = None
    #: jobs held aside by their function's limits until a slot frees (limits.py)
    held: int = 0

    def throughput_per_s(self, minutes: int = 5) -> float:
        """Final outcomes per second over the last ``minutes`` whole minutes and the current one so far (so a
        burst shows at once, and the rate is not diluted by the part of this minute still to come)."""
        counted = self.minutes[-minutes - 1 :]
        if not counted:
            return 0.0
        elapsed_s = 60 * (len(counted) - 1) + max(1.0, (self.read_ms - counted[-1].start_ms) / 1000)
        return sum(m.finished for m in counted) / elapsed_s

    def failure_rate(self, minutes: int = 5) -> float | None:
        """Share of final outcomes that failed for good over the last ``minutes`` (None with no outcome)."""
        whole = self.minutes[-minutes - 1 :]
        finished = sum(m.finished for m in whole)
        return sum(m.dead for m in whole) / finished if finished else None


async def queue_stats(redis: Redis, queue: str = k.default_queue_name, minutes: int = 15) -> QueueStats:
    """The counts of ``queue`` now, with the outcome counts of the last ``minutes`` minutes."""
    now_ms = int(time.time() * 1000)
    this_minute = now_ms // 60_000
    spans = range(this_minute - minutes, this_minute + 1)
    async with redis.pipeline(transaction=False) as pipe:
        await script(redis, "stats")(keys=[queue], args=[now_ms, SCAN_ROWS], client=pipe)
        pipe.zcard(k.DLQ_KEY_PREFIX + queue)
        pipe.get(k.PAUSED_KEY_PREFIX + queue)
        for minute in spans:
            pipe.hgetall(f"{k.OUTCOMES_KEY_PREFIX}{queue}:{minute}")
        replies = await pipe.execute()
    (_total, due, later, retrying_seen, sample, oldest, held), dead, paused = replies[0], replies[1], replies[2]
    workers = await live_workers(redis, queue)
    running = min(due, sum(w.running for w in workers))
    retrying = retrying_seen if sample >= later else round(later * retrying_seen / sample)
    history = []
    for minute, counts in zip(spans, replies[3:], strict=True):
        row = Minute(minute * 60_000)
        for kind, n in counts.items():
            if (name := kind.decode()) in OUTCOME_KINDS:
                setattr(row, name, int(n))
        history.append(row)
    return QueueStats(
        queue=queue, queued=due - running, running=running, deferred=later - retrying, retrying=retrying,
        dead=dead, oldest_due_age_s=None if oldest is None else max(0.0, (now_ms - float(oldest)) / 1000),
        estimated=sample < later, minutes=history, workers=workers, read_ms=now_ms,
        paused_since_ms=None if paused is None else int(paused), held=held,
    )  # fmt: skip
