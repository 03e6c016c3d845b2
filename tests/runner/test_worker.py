"""Our worker against a real Redis: typed results, retries, timeouts, and bad input that must not stop it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest
from arq.connections import ArqRedis

from src.runner import Codec, JobClient, JobFailed, JobStatus
from src.runner import constants as k
from src.runner.worker import Worker
from tests import sample_jobs
from tests.sample_jobs import Moved, Point, add, context_of, flaky, lies, move, refuse, slow
from tests.waiting import SLOW_FACTOR

ALL = [add, move, flaky, refuse, slow, lies, context_of]


async def test_typed_result(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    running_worker(ALL)
    handle = await client.enqueue(move, Point(x=1, y=2), dx=5)
    moved = await handle.result(timeout_s=5)
    assert isinstance(moved, Moved)
    assert moved.point == Point(x=6, y=2)
    info = await handle.info()
    assert info.status is JobStatus.complete and info.success is True
    assert info.result["point"] == {"x": 6, "y": 2}


async def test_context_is_typed_and_filled(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    running_worker(ALL)
    handle = await client.enqueue(context_of)
    assert await handle.result(timeout_s=5) == {
        "job_id": handle.job_id, "job_try": 1, "max_tries": 5, "function": "context_of",
    }  # fmt: skip


async def test_errors_retry_with_backoff_until_success(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    sample_jobs.calls.clear()
    running_worker(ALL)
    handle = await client.enqueue(flaky, fail_times=2)
    assert await handle.result(timeout_s=5) == 3
    assert sample_jobs.calls == [("flaky", 1), ("flaky", 2), ("flaky", 3)]


async def test_exhausted_tries_fail_with_the_last_error(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue(flaky, fail_times=5)
    with pytest.raises(JobFailed, match="ConnectionError: try 3 failed"):
        await handle.result(timeout_s=5)


async def test_permanent_errors_do_not_retry(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    sample_jobs.calls.clear()
    running_worker(ALL)
    with pytest.raises(JobFailed, match="Permanent: no, never"):
        await (await client.enqueue(refuse)).result(timeout_s=5)
    assert sample_jobs.calls == [("refuse", 1)]


async def test_timeout_is_recorded_as_such(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    running_worker(ALL)
    with pytest.raises(JobFailed, match=r"JobTimeout: slow\(\) exceeded its timeout of 0.1s"):
        await (await client.enqueue(slow, 5)).result(timeout_s=5)


async def test_invalid_result_fails_the_job(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    running_worker(ALL)
    with pytest.raises(JobFailed, match="ResultInvalid: lies"):
        await (await client.enqueue(lies)).result(timeout_s=5)


async def _raw_job(redis: ArqRedis, job_id: str, payload: bytes) -> None:
    """Write a job the way a foreign or hostile producer could, bypassing our client."""
    await redis.set(k.job_key_prefix + job_id, payload)
    await redis.zadd(k.default_queue_name, {job_id: 1})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\xffnot json", "PayloadError: payload is not JSON"),
        (b'{"v":1,"d":{"t":null,"f":"nope","a":[],"k":{},"et":1}}', "function 'nope' not found"),
        (b'{"v":1,"d":{"t":null,"f":"add","a":[],"k":{"a":"x"},"et":1}}', "ArgumentsInvalid: invalid arguments"),
        (b'{"v":1,"d":{"t":null,"f":"add","a":[],"k":{"zzz":1,"a":1},"et":1}}', "zzz: Extra inputs"),
        (b'{"v":7,"d":{}}', "unsupported envelope version 7"),
    ],
)
async def test_bad_jobs_fail_with_a_reason_and_the_worker_goes_on(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker], payload: bytes, reason: str
) -> None:
    running_worker(ALL)
    await _raw_job(redis, "bad", payload)
    with pytest.raises(JobFailed, match=reason):
        await client.handle(add, "bad").result(timeout_s=5)
    assert await (await client.enqueue(add, 1)).result(timeout_s=5) == 2


async def test_signing_worker_refuses_unsigned_and_altered_jobs(
    redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    signed = JobClient(redis, Codec("s3cret"))
    running_worker(ALL, codec=Codec("s3cret"))
    unsigned = await JobClient(redis, Codec()).enqueue(add, 1)
    with pytest.raises(JobFailed, match="SignatureError: payload is unsigned"):
        await signed.handle(add, unsigned.job_id).result(timeout_s=5)

    tampered = await signed.enqueue(add.options(defer_by=0.3), 1)
    key = k.job_key_prefix + tampered.job_id
    await redis.set(key, (await redis.get(key)).replace(b'"a":1', b'"a":1000'))
    with pytest.raises(JobFailed, match="SignatureError: payload signature does not match"):
        await tampered.result(timeout_s=5)

    assert await (await signed.enqueue(add, 41)).result(timeout_s=5) == 42


async def test_many_jobs_run_concurrently(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    running_worker(ALL, max_jobs=50)
    handles = [await client.enqueue(add, i) for i in range(200)]
    results = await asyncio.gather(*(h.result(timeout_s=10) for h in handles))
    assert results == [i + 1 for i in range(200)]


def test_duplicate_job_names_are_refused(make_worker: Callable[..., Worker]) -> None:
    with pytest.raises(ValueError, match="registered twice: add"):
        make_worker([add, add])


async def test_observed_retry_delays_follow_the_backoff_policy(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    from tests.sample_jobs import backs_off, starts_at

    starts_at.clear()
    running_worker([backs_off])
    assert await (await client.enqueue(backs_off)).result(timeout_s=10) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts_at)]
    # try n waits min(max_s, base_s * 2**(n-1)) less up to half (jitter 0.5): 0.1-0.2, 0.2-0.4, 0.25-0.5
    for gap, (low, high) in zip(gaps, [(0.1, 0.2), (0.2, 0.4), (0.25, 0.5)], strict=True):
        # + the wake-up and claim after the due time (longer on a loaded CI machine)
        assert low - 0.01 <= gap <= high + 0.1 * SLOW_FACTOR, gaps


def test_a_lease_shorter_than_renewals_can_keep_is_refused(make_worker: Callable[..., Worker]) -> None:
    with pytest.raises(ValueError, match=r"lease_s must be at least 0\.3 s"):
        make_worker(ALL, lease_s=0.1)
