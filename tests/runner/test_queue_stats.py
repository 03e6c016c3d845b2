"""A queue's counts and the worker registry, read from a real Redis with a real worker running."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from arq.connections import ArqRedis

from src.runner import JobClient
from src.runner import constants as k
from src.runner.queue_stats import QueueStats, queue_stats
from src.runner.worker import Worker
from src.runner.worker_registry import HEARTBEAT_TTL_S, WorkerRecord, live_workers
from tests.sample_jobs import add, flaky, nap, refuse
from tests.waiting import wait_for


async def test_a_running_worker_is_listed_with_its_running_jobs(
    client: JobClient, redis: ArqRedis, make_worker: Callable[..., Worker]
) -> None:
    worker = make_worker([nap], max_jobs=7)
    task = asyncio.create_task(worker.async_run())
    handle = await client.enqueue(nap, 30)
    record = await wait_for(lambda: _one_running(redis), message="the worker's heartbeat never listed the running job")
    assert record.worker_id == worker.worker_id
    assert (record.pid, record.concurrency, record.queue) == (os.getpid(), 7, k.default_queue_name)
    assert record.running_ids == [handle.job_id]
    assert record.version and record.host
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await worker.close()
    assert await live_workers(redis, k.default_queue_name) == [], "a worker that stopped cleanly is still listed"


async def _one_running(redis: ArqRedis) -> WorkerRecord | None:
    workers = await live_workers(redis, k.default_queue_name)
    return workers[0] if len(workers) == 1 and workers[0].running == 1 else None


async def test_a_dead_workers_record_expires_and_is_pruned(redis: ArqRedis) -> None:
    record = WorkerRecord("gone", k.default_queue_name, "host", 1, "0", 10, 0, heartbeat_ms=1)
    await redis.set(k.HEARTBEAT_KEY_PREFIX + "gone", record.to_json(), px=50)
    await redis.zadd(k.WORKERS_KEY_PREFIX + k.default_queue_name, {"gone": 1})
    assert [w.worker_id for w in await live_workers(redis, k.default_queue_name)] == ["gone"]

    async def expired() -> bool:
        return not await redis.exists(k.HEARTBEAT_KEY_PREFIX + "gone")

    await wait_for(expired, timeout_s=HEARTBEAT_TTL_S)
    assert await live_workers(redis, k.default_queue_name) == []
    assert await redis.zcard(k.WORKERS_KEY_PREFIX + k.default_queue_name) == 0


async def test_counts_by_state(client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]) -> None:
    await client.enqueue(add, 1, 2)
    await client.enqueue(add, 1, 3)
    await client.enqueue(add.options(defer_by=600), 1, 4)
    retrying = await client.enqueue(add.options(defer_by=600), 5)
    await redis.set(k.retry_key_prefix + retrying.job_id, 1)  # a failed try counted: it waits out a backoff
    stats = await queue_stats(redis)
    assert (stats.queued, stats.running, stats.deferred, stats.retrying, stats.dead) == (2, 0, 1, 1, 0)
    assert stats.oldest_due_age_s is not None and 0 <= stats.oldest_due_age_s < 60
    assert not stats.estimated and stats.workers == []

    running_worker([add, nap, refuse, flaky])
    await client.enqueue(nap, 30)
    await wait_for(lambda: _settled(redis), message="the due jobs did not run")
    await client.enqueue(refuse)  # fails for good: a dead letter
    await client.enqueue(flaky, 1)  # one failed try, then a success
    stats = await wait_for(lambda: _outcomes(redis, 4), message="outcomes were not counted")
    assert (stats.queued, stats.running, stats.deferred, stats.retrying, stats.dead) == (0, 1, 1, 1, 1)
    assert stats.oldest_due_age_s is None  # the only due job runs
    assert sum(m.complete for m in stats.minutes) == 3 and sum(m.failed for m in stats.minutes) == 1
    assert stats.failure_rate() == 1 / 4
    assert [w.running for w in stats.workers] == [1]


async def _settled(redis: ArqRedis) -> bool | None:
    stats = await queue_stats(redis)
    return (stats.running == 1 and stats.queued == 0) or None


async def _outcomes(redis: ArqRedis, finished: int) -> QueueStats | None:
    stats = await queue_stats(redis)
    return stats if sum(m.finished for m in stats.minutes) == finished and stats.dead == 1 else None


async def test_the_split_of_a_large_backlog_is_scaled_from_a_sample(redis: ArqRedis) -> None:
    from src.runner import queue_stats as module

    later = {f"later-{i}": 10**13 + i for i in range(module.SCAN_ROWS * 2)}
    await redis.zadd(k.default_queue_name, later)
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in list(later)[::2]:  # every other one is retrying
            pipe.set(k.retry_key_prefix + job_id, 1)
        await pipe.execute()
    stats = await queue_stats(redis)
    assert stats.estimated
    assert stats.deferred + stats.retrying == len(later)
    assert abs(stats.retrying - len(later) / 2) <= len(later) * 0.05
    await asyncio.sleep(0)
