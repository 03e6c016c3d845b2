"""``result()`` without polling: woken by the worker's announcement that the job ended, reading the stored result
again at most every second, on the real Redis with a real worker (and a stock arq one, which announces nothing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker as ArqWorker

from src.runner import Codec, JobAborted, JobClient
from src.runner.result_waiters import RECHECK_S
from src.runner.worker import Worker
from tests import sample_jobs
from tests.conftest import TEST_POLL_DELAY_S


def _count_snapshots(client: JobClient, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the client's reads of a job's state (one script call each, sent to the real Redis)."""
    reads = [0]
    read = client._read_snapshot

    async def counted(job_id: str, queue: str) -> tuple[bytes | None, bool, bool, bytes | None]:
        reads[0] += 1
        return await read(job_id, queue)

    monkeypatch.setattr(client, "_read_snapshot", counted)
    return reads


async def test_a_waiter_reads_again_only_when_woken_or_each_second(
    client: JobClient, running_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    running_worker([sample_jobs.nap])
    handle = await client.enqueue(sample_jobs.nap, 1.5)
    reads = _count_snapshots(client, monkeypatch)
    assert await handle.result(timeout_s=10) == 1.5
    assert reads[0] <= 2, reads  # at the start, and once announced (polling: ~40)


async def test_a_polling_client_for_comparison(
    redis: ArqRedis, codec: Codec, running_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    running_worker([sample_jobs.nap])
    polling = JobClient(redis, codec, result_wakeups=False)
    handle = await polling.enqueue(sample_jobs.nap, 1.5)
    reads = _count_snapshots(polling, monkeypatch)
    assert await handle.result(timeout_s=10) == 1.5
    assert reads[0] > 20


async def test_a_thousand_waiters_share_one_subscription(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    handles = await client.enqueue_many([sample_jobs.echo.call(str(i)) for i in range(1000)])
    waiting = [asyncio.create_task(h.result(timeout_s=60)) for h in handles]
    await asyncio.sleep(0.1)  # all waiting before the worker starts
    clients = await redis.client_list()
    assert sum(1 for c in clients if c.get("cmd") in ("subscribe", "ssubscribe") or int(c.get("sub", 0))) == 1
    running_worker([sample_jobs.echo])
    assert await asyncio.gather(*waiting) == [str(i) for i in range(1000)]


async def test_a_queued_job_aborted_wakes_its_waiter(client: JobClient) -> None:
    handle = await client.enqueue(sample_jobs.echo, "never runs")  # no worker
    waiting = asyncio.create_task(handle.result(timeout_s=30))
    await asyncio.sleep(0.1)  # waiting
    loop = asyncio.get_running_loop()
    aborted_at = loop.time()
    assert await handle.abort()
    with pytest.raises(JobAborted):
        await waiting
    assert loop.time() - aborted_at < RECHECK_S / 2  # woken by the abort's announcement, not the re-check


async def test_a_job_nobody_announces_is_read_within_the_recheck(
    redis: ArqRedis, client: JobClient, codec: Codec
) -> None:
    handle = await client.enqueue(sample_jobs.echo, "stock")
    waiting = asyncio.create_task(handle.result(timeout_s=30))
    stock = ArqWorker(
        [sample_jobs.echo.arq_function()], redis_pool=redis, burst=True, poll_delay=TEST_POLL_DELAY_S,
        handle_signals=False, job_serializer=codec.dumps, job_deserializer=codec.loads,
    )  # fmt: skip
    await stock.main()  # finishes the job without announcing it
    loop = asyncio.get_running_loop()
    finished_at = loop.time()
    assert await waiting == "stock"
    assert loop.time() - finished_at <= RECHECK_S + 1.0


async def test_jobs_that_end_at_once_wake_their_waiters(
    redis_settings: RedisSettings, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    """A job can end between the waiter's read and its wait: the announcement must still wake it (a miss would
    show as a result RECHECK_S late). The client is connected as an application's is."""
    connected = await JobClient.connect(redis_settings, codec)
    running_worker([sample_jobs.nap])
    late: list[tuple[int, float]] = []
    try:
        for i in range(300):
            started = time.perf_counter()
            handle = await connected.enqueue(sample_jobs.nap, 0.001 * (i % 3))  # a third end at once
            await handle.result(timeout_s=30)
            if (took_s := time.perf_counter() - started) > RECHECK_S / 2:
                late.append((i, took_s))
    finally:
        await connected.close()
    assert late == []
