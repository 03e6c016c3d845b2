"""Cancellation belongs to the worker: a job's own CancelledError is a failed try, a cancel reason lives for one
try only, and an aborted job's result raises JobAborted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from arq.connections import ArqRedis

from src.runner import Backoff, JobAborted, JobClient, JobContext, JobFailed, JobsError, JobTimeout, job
from src.runner import constants as k
from src.runner.worker import Worker
from tests.waiting import wait_for

tries: list[tuple[int, float, float]] = []


@job(retry=Backoff(max_tries=3, base_s=0.01, max_s=0.02))
async def cancels_itself(ctx: JobContext) -> None:
    """What a library that turns its own timeout into CancelledError looks like from the outside."""
    tries.append((ctx.job_try, time.monotonic(), 0.0))
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


@job(timeout_s=0.2, retry=Backoff(max_tries=2, base_s=0.01, max_s=0.02))
async def converts_timeout(ctx: JobContext) -> None:
    """Try 1 turns the timeout's cancellation into another error; try 2 would run 1 s unless timed out."""
    start = time.monotonic()
    try:
        await asyncio.sleep(1.0)
    except asyncio.CancelledError:
        if ctx.job_try == 1:
            tries.append((ctx.job_try, start, time.monotonic()))
            raise ValueError("converted") from None
        raise
    finally:
        if ctx.job_try == 2:
            tries.append((ctx.job_try, start, time.monotonic()))


@job(retry=Backoff(max_tries=1))
async def sleeps(ctx: JobContext, seconds: float) -> None:
    tries.append((ctx.job_try, time.monotonic(), 0.0))
    await asyncio.sleep(seconds)


@pytest.fixture(autouse=True)
def _clear() -> None:
    tries.clear()


async def test_a_jobs_own_cancelled_error_is_a_failed_try(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker([cancels_itself])
    handle = await client.enqueue(cancels_itself)
    with pytest.raises(JobFailed, match="CancelledError"):
        await handle.result(timeout_s=10)
    assert [t for t, _, _ in tries] == [1, 2, 3]
    assert await redis.zscore(k.DLQ_KEY_PREFIX + k.default_queue_name, handle.job_id) is not None


async def test_a_cancel_reason_does_not_outlive_its_try(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([converts_timeout])
    handle = await client.enqueue(converts_timeout)
    with pytest.raises(JobFailed, match="JobTimeout"):
        await handle.result(timeout_s=10)
    [(_, _, _), (second, start, end)] = tries
    assert second == 2
    assert end - start < 0.8  # the second try was timed out too, not left to run its full second


async def test_an_aborted_jobs_result_raises_job_aborted(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([sleeps])
    handle = await client.enqueue(sleeps, 5.0)
    await wait_for(lambda: bool(tries))
    assert await handle.abort(timeout_s=5)
    with pytest.raises(JobAborted) as raised:
        await handle.result(timeout_s=5)
    assert isinstance(raised.value, JobsError) and not isinstance(raised.value, asyncio.CancelledError)


async def test_a_queued_job_aborted_before_it_started_raises_job_aborted(client: JobClient) -> None:
    handle = await client.enqueue(sleeps, 5.0)
    assert await handle.abort(timeout_s=1)
    with pytest.raises(JobAborted):
        await handle.result(timeout_s=1)


def test_timeouts_are_still_job_timeouts() -> None:
    assert issubclass(JobTimeout, JobsError)
