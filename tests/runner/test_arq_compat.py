"""Wire compatibility with arq 0.28, each direction, on a real Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from arq.worker import Worker as ArqWorker

from src.runner import Codec, JobClient, JobFailed
from src.runner.worker import Worker
from tests.conftest import TEST_POLL_DELAY_S
from tests.sample_jobs import Moved, Point, add, move, nap
from tests.waiting import wait_for


async def test_arq_enqueue_job_runs_on_our_worker(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([add, move])
    job = await redis.enqueue_job("move", Point(x=1, y=1), dx=2)  # arq's own client, our codec
    assert job is not None
    result = await job.result(timeout=5, poll_delay=0.01)
    assert result["point"] == {"x": 3, "y": 1}
    assert isinstance(await client.handle(move, job.job_id).result(timeout_s=1), Moved)


async def test_our_client_runs_on_a_stock_arq_worker(redis: ArqRedis, client: JobClient, codec: Codec) -> None:
    stock = ArqWorker(
        [add.arq_function(), move.arq_function()],
        redis_pool=redis,
        burst=True,
        poll_delay=TEST_POLL_DELAY_S,
        handle_signals=False,
        job_serializer=codec.dumps,
        job_deserializer=codec.loads,
    )
    moved = await client.enqueue(move, Point(x=0, y=0), dx=7)
    bad = await client.enqueue(move.options(job_id="bad"), Point(x=0, y=0), dx=1)
    await redis.set("arq:job:bad", (await redis.get("arq:job:bad")).replace(b'"dx":1', b'"dx":"many"'))
    await stock.main()
    assert type(stock) is ArqWorker
    assert (await moved.result(timeout_s=1)).point.x == 7
    # validation runs inside the job function, so a stock worker refuses bad arguments too
    with pytest.raises(JobFailed, match="ArgumentsInvalid"):
        await bad.result(timeout_s=1)


async def test_arq_job_api_reads_our_jobs(
    redis: ArqRedis, client: JobClient, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    handle = await client.enqueue(add, 1, 2)
    job = Job(handle.job_id, redis, _deserializer=codec.loads)
    assert await job.status() is JobStatus.queued
    definition = await job.info()
    assert definition is not None and definition.function == "add" and definition.kwargs == {"a": 1, "b": 2}
    running_worker([add])
    assert await job.result(timeout=5, poll_delay=0.01) == 3
    assert await job.status() is JobStatus.complete


async def test_arq_job_result_reraises_our_failures(
    redis: ArqRedis, client: JobClient, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    running_worker([add])
    await redis.enqueue_job("add", "not-a-number", _job_id="x")
    with pytest.raises(JobFailed, match="ArgumentsInvalid"):
        await Job("x", redis, _deserializer=codec.loads).result(timeout=5, poll_delay=0.01)


async def test_arq_abort_cancels_a_running_job(
    redis: ArqRedis, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    running_worker([nap], allow_abort_jobs=True)
    job = await redis.enqueue_job("nap", 5)
    assert job is not None

    async def in_progress() -> bool:
        return await job.status() is JobStatus.in_progress

    await wait_for(in_progress, message="the job in progress")
    assert await job.abort(timeout=5, poll_delay=0.01) is True
