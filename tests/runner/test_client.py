from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from arq.connections import ArqRedis

from src.runner import (
    ArgumentsInvalid,
    Codec,
    JobClient,
    JobNotFound,
    JobStatus,
    PayloadTooLarge,
    ResultNotReady,
)
from src.runner import constants as k
from src.runner.worker import Worker
from tests.sample_jobs import Point, add, echo, move, nap


async def test_enqueue_writes_the_job_in_arq_format(client: JobClient, redis: ArqRedis, codec: Codec) -> None:
    handle = await client.enqueue(add, 2, b=3)
    assert handle.enqueued
    raw = await redis.get(k.job_key_prefix + handle.job_id)
    job = codec.loads(raw)
    assert job["f"] == "add" and job["k"] == {"a": 2, "b": 3} and job["a"] == []
    score = await redis.zscore(k.default_queue_name, handle.job_id)
    assert abs(score - time.time() * 1000) < 5_000
    assert await handle.status() is JobStatus.queued


async def test_invalid_arguments_write_nothing(client: JobClient, redis: ArqRedis) -> None:
    with pytest.raises(ArgumentsInvalid, match="a: Input should be a valid integer"):
        await client.enqueue(add, "two")  # type: ignore[arg-type]
    with pytest.raises(ArgumentsInvalid, match=r"point\.y"):
        await client.enqueue(move, Point.model_construct(x=1, y=-5), 1)
    assert await redis.dbsize() == 0


async def test_oversized_payload_is_refused_and_writes_nothing(redis: ArqRedis, codec: Codec) -> None:
    small = JobClient(redis, codec, max_payload_bytes=300)
    await small.enqueue(add, 1)
    assert await redis.dbsize() == 2  # job key and queue
    await redis.flushdb()
    with pytest.raises(PayloadTooLarge, match="over the limit of 300"):
        await small.enqueue(echo, "x" * 300)
    assert await redis.dbsize() == 0


async def test_job_id_dedupes(client: JobClient, redis: ArqRedis) -> None:
    first = await client.enqueue(add.options(job_id="order-1"), 1)
    second = await client.enqueue(add.options(job_id="order-1"), 2)
    assert first.enqueued and not second.enqueued
    assert await redis.zcard(k.default_queue_name) == 1
    assert (await second.info()).kwargs == {"a": 1, "b": 1}


async def test_defer_by_and_until_set_the_due_time(client: JobClient, redis: ArqRedis) -> None:
    by = await client.enqueue(add.options(defer_by=timedelta(seconds=60)), 1)
    at = datetime.now(UTC) + timedelta(hours=1)
    until = await client.enqueue(add.options(defer_until=at), 1)
    now_ms = time.time() * 1000
    assert abs(await redis.zscore(k.default_queue_name, by.job_id) - (now_ms + 60_000)) < 5_000
    assert await redis.zscore(k.default_queue_name, until.job_id) == int(at.timestamp() * 1000)
    assert await by.status() is JobStatus.deferred
    # the job key outlives its due time, as arq's does
    assert await redis.pttl(k.job_key_prefix + until.job_id) > 3_600_000


async def test_result_waits_with_timeout(client: JobClient) -> None:
    handle = await client.enqueue(add, 1)
    started = time.monotonic()
    with pytest.raises(ResultNotReady):
        await handle.result(timeout_s=0.2)
    assert time.monotonic() - started < 1


async def test_unknown_job_id_is_not_found(client: JobClient) -> None:
    handle = client.handle(add, "nope")
    with pytest.raises(JobNotFound):
        await handle.result(timeout_s=1)
    assert await handle.status() is JobStatus.not_found
    assert (await handle.info()).function is None


async def test_a_handle_remembers_its_queue(
    client: JobClient, running_worker: Callable[..., Worker], redis: ArqRedis
) -> None:
    queued = await client.enqueue(add.options(queue_name="other"), 1, 2)
    assert queued.queue_name == "other"
    assert await queued.status() is JobStatus.queued
    assert (await queued.info()).function == "add"
    assert await queued.abort(timeout_s=1) is True  # queued: aborted at once
    assert await queued.status() is JobStatus.complete
    running_worker([add, nap], queue_name="other")
    job = await client.enqueue(nap.options(queue_name="other"), 5)
    while await job.status() is not JobStatus.in_progress:
        await asyncio.sleep(0.01)
    assert await job.abort(timeout_s=5) is True  # running: its worker cancels it
    done = await client.enqueue(add.options(queue_name="other"), 2, 3)
    assert await done.result(timeout_s=5) == 5
    assert await client.handle(add, done.job_id, queue_name="other").status() is JobStatus.complete
