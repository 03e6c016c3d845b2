"""Pausing a queue, on the real Redis with a worker: nothing starts while it is paused — not even a job an idle
worker would be handed — jobs wait in the queue, and resuming starts them at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from arq.connections import ArqRedis

from src.runner import JobClient, JobStatus, pausing
from src.runner import constants as k
from src.runner.queue_stats import queue_stats
from src.runner.worker import Worker
from tests import sample_jobs
from tests.conftest import TEST_POLL_DELAY_S
from tests.waiting import wait_for


async def test_nothing_starts_while_paused_and_resume_starts_it_at_once(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([sample_jobs.echo])
    await wait_for(lambda: redis.zcard(k.IDLE_KEY_PREFIX + client.queue_name), 10)  # idle, waiting to be handed jobs
    assert await pausing.pause(redis, client.queue_name)
    assert not await pausing.pause(redis, client.queue_name)  # already paused
    handles = [await client.enqueue(sample_jobs.echo, str(i)) for i in range(5)]
    await asyncio.sleep(TEST_POLL_DELAY_S * 10)  # ten of the worker's polls: it claimed, and found the queue paused
    assert [await h.status() for h in handles] == [JobStatus.queued] * 5
    stats = await queue_stats(redis, client.queue_name)
    assert stats.queued == 5 and stats.paused_since_ms is not None
    assert await pausing.resume(redis, client.queue_name)
    assert [await h.result(timeout_s=10) for h in handles] == [str(i) for i in range(5)]
    assert await pausing.paused_since_ms(redis, client.queue_name) is None
    assert not await pausing.resume(redis, client.queue_name)


async def test_a_paused_queue_holds_for_a_worker_started_later(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    await pausing.pause(redis, client.queue_name)
    handle = await client.enqueue(sample_jobs.echo, "later")
    running_worker([sample_jobs.echo])  # a new worker (or one restarted) reads the flag from Redis
    await asyncio.sleep(TEST_POLL_DELAY_S * 10)
    assert await handle.status() is JobStatus.queued
    await pausing.resume(redis, client.queue_name)
    assert await handle.result(timeout_s=10) == "later"
