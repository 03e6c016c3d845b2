"""The dead-letter queue: what lands there, with what, and requeue/purge."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable

import pytest
from arq.connections import ArqRedis

from src.runner import DeadJob, DeadLetters, JobClient, JobFailed
from src.runner import constants as k
from src.runner.worker import Worker
from tests.sample_jobs import add, echo, flaky, nap, refuse, switchable
from tests.waiting import wait_for

ALL = [add, echo, flaky, nap, refuse, switchable]


@pytest.fixture
def dlq(redis: ArqRedis) -> DeadLetters:
    return DeadLetters(redis)


async def _dead(dlq: DeadLetters, job_id: str) -> DeadJob:
    return await wait_for(lambda: dlq.get(job_id), message=f"{job_id} in the dead-letter queue")


async def test_permanent_failure_is_dead_with_everything_needed(
    client: JobClient, dlq: DeadLetters, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue(refuse)
    dead = await _dead(dlq, handle.job_id)
    assert dead.reason == "permanent failure" and dead.function == "refuse"
    assert (dead.error_type, dead.error_message, dead.tries) == ("Permanent", "no, never", 1)
    assert "raise Permanent" in dead.traceback
    assert dead.failed_at_ms >= dead.started_at_ms >= dead.enqueued_at_ms > 0


async def test_exhausted_tries_are_dead(
    client: JobClient, dlq: DeadLetters, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue(flaky, 9)
    dead = await _dead(dlq, handle.job_id)
    assert (dead.reason, dead.tries, dead.kwargs) == ("tries exhausted", 3, {"fail_times": 9})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff garbage", "payload refused"),
        (b'{"v":1,"d":{"t":null,"f":"gone","a":[],"k":{},"et":1}}', "unknown function"),
    ],
)
async def test_jobs_that_cannot_run_are_dead_with_their_payload(
    redis: ArqRedis, dlq: DeadLetters, running_worker: Callable[..., Worker], payload: bytes, reason: str
) -> None:
    running_worker(ALL)
    await redis.set(k.job_key_prefix + "bad", payload)
    await redis.zadd(k.default_queue_name, {"bad": 1})
    dead = await _dead(dlq, "bad")
    assert dead.reason == reason
    assert base64.b64decode(dead.payload_b64) == payload


async def test_aborted_jobs_are_not_dead(
    client: JobClient, dlq: DeadLetters, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue(nap, 30)

    async def started() -> bool:
        info = await handle.info()
        return info.start_time is not None or bool(await client.redis.exists(k.in_progress_key_prefix + handle.job_id))

    await wait_for(started, message="the job started")
    assert await handle.abort()
    assert await dlq.count() == 0


async def test_requeue_runs_it_again_from_the_first_try(
    client: JobClient, redis: ArqRedis, dlq: DeadLetters, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    await redis.set("broken", 1)
    handle = await client.enqueue(switchable)
    with pytest.raises(JobFailed, match="broken on purpose"):
        await handle.result(timeout_s=5)
    await _dead(dlq, handle.job_id)
    await redis.delete("broken")
    assert await dlq.requeue(handle.job_id) is True
    assert await dlq.requeue(handle.job_id) is False  # not dead any more
    assert await handle.result(timeout_s=5) == "fixed"
    assert (await handle.info()).job_try == 1
    assert await dlq.count() == 0


async def test_page_count_and_purge(client: JobClient, dlq: DeadLetters, running_worker: Callable[..., Worker]) -> None:
    running_worker(ALL)
    handles = [await client.enqueue(refuse) for _ in range(3)] + [await client.enqueue(flaky, 9)]
    for h in handles:
        await _dead(dlq, h.job_id)
    assert await dlq.count() == 4
    first, second = await dlq.page(0, 2), await dlq.page(2, 2)
    assert len(first) == 2 and len(second) == 2
    assert first[0].failed_at_ms >= second[-1].failed_at_ms  # newest first
    assert await dlq.purge_all(function="refuse") == 3
    assert [d.function for d in await dlq.page()] == ["flaky"]
    assert await dlq.purge(handles[-1].job_id) is True
    assert await dlq.count() == 0


async def test_a_result_over_the_limit_fails_its_job(
    client: JobClient, dlq: DeadLetters, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL, max_result_bytes=1024)
    handle = await client.enqueue(echo, "x" * 2000)
    with pytest.raises(JobFailed, match=r"PayloadTooLarge.*max_result_bytes"):
        await handle.result(timeout_s=5)
    dead = await _dead(dlq, handle.job_id)
    assert (dead.reason, dead.error_type, dead.function) == ("result too large", "PayloadTooLarge", "echo")
    small = await client.enqueue(echo, "x" * 100)
    assert await small.result(timeout_s=5) == "x" * 100


async def test_an_arq_payload_over_the_limit_is_dead_lettered_unread(
    redis: ArqRedis, dlq: DeadLetters, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL, max_payload_bytes=1024)
    job = await redis.enqueue_job("echo", "x" * 2000)  # plain arq's client checks no size
    assert job is not None
    dead = await _dead(dlq, job.job_id)
    assert dead.reason == "payload too large" and "max_payload_bytes" in dead.error_message


async def test_bulk_requeue_and_purge_go_a_page_at_a_time(dlq: DeadLetters, redis: ArqRedis) -> None:
    """More dead jobs than a page, of two functions, and ids whose record expired: a bulk action reports each page
    and acts on what matches; purge also clears the expired ids."""
    from dataclasses import asdict, replace

    import orjson

    from src.runner.dlq import PAGE_ROWS

    payload = base64.b64encode(b"the job as queued").decode()
    model = DeadJob(
        "", k.default_queue_name, "", [], {}, "permanent failure", "Permanent", "no", "", 1, 0, 0, 0, payload
    )
    records = {f"dead-{i:05d}": replace(model, job_id=f"dead-{i:05d}", function="refuse" if i % 3 else "other")
               for i in range(PAGE_ROWS * 2 + 100)}  # fmt: skip
    async with redis.pipeline(transaction=False) as pipe:
        for i, (job_id, record) in enumerate(records.items()):
            pipe.set(k.DLQ_ENTRY_KEY_PREFIX + job_id, orjson.dumps(asdict(record)))
            pipe.zadd(k.DLQ_KEY_PREFIX + k.default_queue_name, {job_id: i})
        pipe.zadd(k.DLQ_KEY_PREFIX + k.default_queue_name, {"expired-1": 0, "expired-2": 10**6})
        await pipe.execute()
    total = len(records) + 2
    pages: list[tuple[int, int, int]] = []
    refused = sum(r.function == "refuse" for r in records.values())
    assert await dlq.requeue_all("refuse", lambda *page: pages.append(page)) == refused
    assert len(pages) >= total // PAGE_ROWS and pages[-1] == (total, refused, total)
    assert all(b[0] - a[0] <= PAGE_ROWS for a, b in itertools.pairwise(pages))
    assert await redis.zcard(k.default_queue_name) == refused
    assert await dlq.count() == total - refused  # the other function's, and the expired ids
    pages.clear()
    assert await dlq.purge_all(progress=lambda *page: pages.append(page)) == total - refused - 2
    assert await dlq.count() == 0 and pages[-1][0] == total - refused
