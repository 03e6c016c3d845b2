from __future__ import annotations

import pytest
from arq.connections import ArqRedis

from src.runner import ArgumentsInvalid, Codec, EagerClient, JobFailed, JobStatus, PayloadTooLarge
from tests import sample_jobs
from tests.sample_jobs import Moved, Point, add, context_of, echo, flaky, move, refuse, slow


async def test_runs_inline_with_typed_result() -> None:
    client = EagerClient()
    handle = await client.enqueue(move, Point(x=1, y=1), 2)
    assert await handle.status() is JobStatus.complete
    assert isinstance(await handle.result(), Moved)
    info = await handle.info()
    assert info.success and info.function == "move" and info.job_try == 1


async def test_validates_like_the_real_client() -> None:
    client = EagerClient(max_payload_bytes=300)
    with pytest.raises(ArgumentsInvalid):
        await client.enqueue(add, "x")  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge):
        await client.enqueue(echo, "x" * 400)


async def test_retries_inline_and_reports_failures() -> None:
    sample_jobs.calls.clear()
    client = EagerClient()
    assert await (await client.enqueue(flaky, 2)).result() == 3
    with pytest.raises(JobFailed, match="ConnectionError: try 3 failed"):
        await (await client.enqueue(flaky, 9)).result()
    with pytest.raises(JobFailed, match="Permanent"):
        await (await client.enqueue(refuse)).result()
    with pytest.raises(JobFailed, match="JobTimeout"):
        await (await client.enqueue(slow, 1)).result()
    assert sample_jobs.calls.count(("refuse", 1)) == 1 and ("refuse", 2) not in sample_jobs.calls


async def test_job_id_dedupes_and_context_is_filled() -> None:
    client = EagerClient()
    first = await client.enqueue(context_of.options(job_id="j1"))
    again = await client.enqueue(context_of.options(job_id="j1"))
    assert first.enqueued and not again.enqueued
    assert (await first.result())["job_id"] == "j1"


async def test_signed_codec_and_redis_for_jobs(redis: ArqRedis) -> None:
    client = EagerClient(Codec("secret"), redis=redis)
    assert await (await client.enqueue(add, 1)).result() == 2


async def test_sync_and_process_jobs_run_eagerly_too() -> None:
    from tests import offload_jobs

    client = EagerClient()
    said = await client.enqueue(offload_jobs.who, word="x")
    assert (await said.result())["word"] == "X"
    primes = await (await client.enqueue(offload_jobs.primes_below, n=100)).result()
    assert primes["count"] == 25
