"""Priorities on the real Redis with a worker: a job's priority is a head start in the queue's order (its score),
so a high-priority job enqueued behind many others starts next, even in a busy worker whose claim cursor is past
it; the head start is also the ageing rule (a job that waited longer than it runs first); and an option that
cannot be honoured (a head start for a deferred job) is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from arq.connections import ArqRedis
from arq.worker import Worker as ArqWorker

from src.runner import Codec, JobClient, JobContext, job, pausing
from src.runner import constants as k
from src.runner.worker import Worker
from tests.conftest import TEST_POLL_DELAY_S
from tests.waiting import wait_for

STARTED = "test:priorities:started"
GATE = "test:priorities:gate"


@job
async def gated(ctx: JobContext, name: str) -> str:
    """Records that it started, then waits until the test opens the gate (one token per job)."""
    redis = ctx.redis
    await redis.rpush(STARTED, name)
    await redis.blpop([GATE], timeout=30)
    return name


@job(priority=3)
async def urgent_by_default(ctx: JobContext, name: str) -> str:
    await ctx.redis.rpush(STARTED, name)
    return name


async def _started(redis: ArqRedis) -> list[str]:
    return [x.decode() for x in await redis.lrange(STARTED, 0, -1)]


async def _started_count_is(redis: ArqRedis, n: int) -> bool:
    return bool(await redis.llen(STARTED) == n)


async def test_priority_is_a_head_start_in_the_score(redis: ArqRedis, client: JobClient) -> None:
    before_ms = time.time() * 1000
    plain = await client.enqueue(gated, "plain")
    high = await client.enqueue(gated.options(priority=2), "high")
    default = await client.enqueue(urgent_by_default, "default")
    overridden = await client.enqueue(urgent_by_default.options(priority=0), "overridden")
    after_ms = time.time() * 1000
    scores = {h: await redis.zscore(client.queue_name, h.job_id) for h in (plain, high, default, overridden)}
    assert before_ms - 1 <= scores[plain] <= after_ms and before_ms - 1 <= scores[overridden] <= after_ms
    assert before_ms - 1 - 2 * k.PRIORITY_STEP_MS <= scores[high] <= after_ms - 2 * k.PRIORITY_STEP_MS
    assert before_ms - 1 - 3 * k.PRIORITY_STEP_MS <= scores[default] <= after_ms - 3 * k.PRIORITY_STEP_MS


@pytest.mark.parametrize("bad", [-1, k.PRIORITY_MAX + 1, 1.5, True, "1"])
def test_a_priority_out_of_range_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="priority must be a whole number from 0 to 1000"):
        gated.options(priority=bad)
    with pytest.raises(ValueError, match="priority must be a whole number"):
        job(priority=bad)(gated.fn)  # type: ignore[call-overload]


async def test_a_head_start_for_a_deferred_job_is_refused_and_nothing_is_written(
    redis: ArqRedis, client: JobClient
) -> None:
    with pytest.raises(ValueError, match="priority=2 is a head start for a job due now"):
        await client.enqueue(gated.options(priority=2, defer_by=timedelta(seconds=30)), "later")
    with pytest.raises(ValueError, match="priority=3 is a head start"):
        await client.enqueue(urgent_by_default.options(defer_by=5), "later")
    assert await redis.zcard(client.queue_name) == 0
    deferred = await client.enqueue(urgent_by_default.options(priority=0, defer_by=5), "later")
    assert await redis.zscore(client.queue_name, deferred.job_id) > time.time() * 1000


async def test_a_high_priority_job_behind_a_thousand_starts_next_in_a_busy_worker(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """The worker is busy (no idle registration, so no hand-off) and its claim cursor is past the head start's
    score: without the rewind marker it finds the job only at its next cursor reset, after other jobs."""
    await redis.delete(STARTED, GATE)
    await client.enqueue_many([gated.call(f"low-{i}") for i in range(1000)])
    running_worker([gated], max_jobs=2)
    await wait_for(lambda: _started_count_is(redis, 2), 10)  # both slots busy, cursor past them
    high = await client.enqueue(gated.options(priority=1), "high")
    assert await redis.get(k.REWIND_KEY_PREFIX + client.queue_name) is not None
    for _ in range(3):  # open the gate for one job at a time: each freed slot claims the next job
        n = await redis.llen(STARTED)
        await redis.rpush(GATE, "go")
        await wait_for(lambda n=n: _started_count_is(redis, n + 1), 10)
    assert (await _started(redis))[2] == "high"
    await redis.rpush(GATE, *["go"] * 10)
    assert await high.result(timeout_s=10) == "high"
    await redis.delete(GATE)


async def test_ageing_a_job_that_waited_longer_than_the_head_start_runs_first(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """Priority 1 is one minute's head start: a plain job that has waited 61 s runs before a new priority-1 job,
    one that has waited 59 s after it. (Waiting is simulated by moving the plain jobs' scores back: the score
    is all the order depends on.)"""
    await redis.delete(STARTED)
    await pausing.pause(redis, client.queue_name)
    waited_long = await client.enqueue(urgent_by_default.options(priority=0), "waited-61s")
    waited_less = await client.enqueue(urgent_by_default.options(priority=0), "waited-59s")
    await redis.zincrby(client.queue_name, -61_000, waited_long.job_id)
    await redis.zincrby(client.queue_name, -59_000, waited_less.job_id)
    await client.enqueue(urgent_by_default.options(priority=1), "priority-1")
    running_worker([urgent_by_default], max_jobs=1)
    await pausing.resume(redis, client.queue_name)
    await wait_for(lambda: _started_count_is(redis, 3), 10)
    assert await _started(redis) == ["waited-61s", "priority-1", "waited-59s"]


async def test_a_stock_worker_reads_priorities_in_the_same_order(
    redis: ArqRedis, client: JobClient, codec: Codec
) -> None:
    """arq's own worker takes due jobs in score order: priorities need nothing of ours to be honoured."""
    await redis.delete(STARTED)
    await client.enqueue(urgent_by_default.options(priority=0), "plain")
    await client.enqueue(urgent_by_default.options(priority=5), "five")
    await client.enqueue(urgent_by_default.options(priority=2), "two")
    stock = ArqWorker(
        [urgent_by_default.arq_function()], redis_pool=redis, burst=True, poll_delay=TEST_POLL_DELAY_S,
        handle_signals=False, queue_name=client.queue_name, job_serializer=codec.dumps, job_deserializer=codec.loads,
        max_jobs=1,
    )  # fmt: skip
    await asyncio.wait_for(stock.main(), 30)
    assert await _started(redis) == ["five", "two", "plain"]
