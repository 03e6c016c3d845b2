"""Owned leases: a worker's in-progress key names it, renewal is compare-and-renew, and a worker never runs two
copies of one job or clobbers the state of a job whose lease it lost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from arq.connections import ArqRedis

from src.runner import NO_RETRY, Backoff, JobClient, JobContext, JobSpec, JobStatus, job
from src.runner import constants as k
from src.runner.worker import Worker
from tests.waiting import wait_for

runs: list[str] = []


@job(retry=NO_RETRY)
async def stalls_once(ctx: JobContext, block_s: float) -> str:
    """Blocks the whole event loop (a sync call in async code) for longer than the lease."""
    runs.append(ctx.job_id)
    time.sleep(block_s)
    await asyncio.sleep(0.05)
    return "done"


@job(retry=Backoff(max_tries=3, base_s=0.01))
async def stalls_retryable(ctx: JobContext, block_s: float) -> str:
    runs.append(ctx.job_id)
    time.sleep(block_s)
    await asyncio.sleep(0.05)
    return "done"


@job(retry=NO_RETRY)
async def waits(ctx: JobContext, seconds: float) -> str:
    runs.append(ctx.job_id)
    await asyncio.sleep(seconds)
    return "waited"


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    runs.clear()


@pytest.mark.parametrize("spec", [stalls_once, stalls_retryable])
async def test_a_stalled_worker_never_runs_a_second_copy(
    spec: JobSpec[[float], str], client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker([stalls_once, stalls_retryable], lease_s=0.3)
    handle = await client.enqueue(spec, 1.0)
    assert await handle.result(timeout_s=10) == "done"
    await asyncio.sleep(0.5)  # a second copy, if any, would have started by now
    assert runs == [handle.job_id]
    assert not await redis.exists(k.DLQ_ENTRY_KEY_PREFIX + handle.job_id)


async def test_the_in_progress_key_names_its_owner(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    worker = running_worker([waits])
    handle = await client.enqueue(waits, 0.5)
    await wait_for(lambda: handle.job_id in runs)
    owner = await redis.get(k.in_progress_key_prefix + handle.job_id)
    assert owner == worker.worker_id.encode()
    assert await handle.result(timeout_s=5) == "waited"


async def test_a_lease_taken_over_is_not_renewed_nor_clobbered(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hasten")
    worker = running_worker([waits], lease_s=0.3)
    handle = await client.enqueue(waits, 1.0)
    key = k.in_progress_key_prefix + handle.job_id
    await wait_for(lambda: handle.job_id in runs)
    await redis.set(key, b"another-worker", px=5000)  # another worker holds the job now
    await wait_for(lambda: "lease" in caplog.text)
    # the job ends meanwhile; its outcome must not touch the new owner's state
    await wait_for(lambda: worker.jobs_complete == 1)
    await worker.outcomes_written()
    assert await redis.get(key) == b"another-worker"
    assert await redis.pttl(key) <= 5000 - 600  # never renewed by the old owner
    assert await redis.exists(k.job_key_prefix + handle.job_id)  # still the new owner's job to finish
    assert not await redis.exists(k.result_key_prefix + handle.job_id)
    lines = [r for r in caplog.records if "lease" in r.getMessage() and handle.job_id in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert await handle.status() is JobStatus.in_progress


async def test_a_job_running_here_is_never_claimed_again_by_this_worker(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """Its lease expired (the process stalled) and this worker's own claim took the job again: the claim goes
    back unspent, the running copy's lease counts as lost, and the job runs once."""
    caplog.set_level(logging.WARNING, logger="hasten")
    worker = running_worker([waits])
    handle = await client.enqueue(waits, 1.5)
    await wait_for(lambda: handle.job_id in runs)
    await redis.delete(k.in_progress_key_prefix + handle.job_id)  # as if the lease ran out
    await wait_for(lambda: "not taken again by this worker" in caplog.text)  # the claim, not the renewer
    assert await handle.result(timeout_s=10) == "waited"
    assert runs == [handle.job_id]
    # its task ends once the outcome's write returns, which may be just after the result is readable
    await wait_for(lambda: worker.running.get(handle.job_id) is None, message="the job left the registry")
    assert (await handle.info()).job_try == 1  # the re-claim gave its try back


@job(retry=NO_RETRY)
async def quick(ctx: JobContext, n: int) -> int:
    await asyncio.sleep(0.001 * (n % 3))
    return n


def _lease_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "lease lost" in r.getMessage() and r.levelno >= logging.WARNING]


async def test_a_job_whose_outcome_was_written_is_not_reported_as_a_lost_lease(
    client: JobClient, running_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """The outcome write ends the lease (the finish script deletes the in-progress key) while the job's task is still
    in the registry: an ``after_job_end`` hook (which runs once the outcome is written) or the write's reply still on
    its way. A renewal in that window finds the key gone: that is the outcome, not a lost lease."""
    hooks_done: list[str] = []

    async def after_job_end(ctx: dict[str, object]) -> None:
        await asyncio.sleep(0.25)  # past the next renewal (every 0.1 s)
        hooks_done.append(str(ctx["job_id"]))

    caplog.set_level(logging.INFO, logger="hasten")
    running_worker([quick], lease_s=0.3, after_job_end=after_job_end, max_jobs=20)
    handles = [await client.enqueue(quick, n) for n in range(10)]
    assert [await h.result(timeout_s=10) for h in handles] == list(range(10))
    await wait_for(lambda: len(hooks_done) == 10, 5, message="every after_job_end hook done")
    assert _lease_warnings(caplog) == []


async def test_fast_jobs_never_report_a_lost_lease(
    client: JobClient, running_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """Renewals (every 0.1 s here) and outcome writes in flight together, over a few thousand fast jobs."""
    caplog.set_level(logging.INFO, logger="hasten")
    running_worker([quick], lease_s=0.3, max_jobs=50)
    handles = await client.enqueue_many([quick.call(n) for n in range(3000)])
    assert [await h.result(timeout_s=30) for h in handles[-10:]] == list(range(2990, 3000))
    await wait_for(lambda: _queue_empty(client), 20)
    assert _lease_warnings(caplog) == []


async def _queue_empty(client: JobClient) -> bool:
    return bool(await client.redis.zcard(client.queue_name) == 0)


@job(retry=Backoff(max_tries=2, base_s=0.01))
async def fails_then_waits(ctx: JobContext) -> str:
    runs.append(f"{ctx.job_id}:{ctx.job_try}")
    if ctx.job_try == 1:
        raise RuntimeError("first try fails")
    await asyncio.sleep(0.5)
    return "second"


async def test_a_retried_job_taken_by_another_worker_is_not_a_lost_lease_of_the_first(
    client: JobClient, running_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """The first try's outcome ('again') is written, another worker takes the job at once, and the first worker's
    task is still in its registry (an ``after_job_end`` hook): its renewal finds the key another worker's. That is
    the outcome written, then the job taken up as usual, not a lease this worker lost."""
    hooks_done: list[str] = []

    async def after_job_end(ctx: dict[str, object]) -> None:
        await asyncio.sleep(0.3)  # past the next renewals (every 0.1 s), while the second try runs elsewhere
        hooks_done.append(str(ctx["job_id"]))

    caplog.set_level(logging.INFO, logger="hasten")
    running_worker([fails_then_waits], lease_s=0.3, after_job_end=after_job_end, max_jobs=1)
    handle = await client.enqueue(fails_then_waits)
    await wait_for(lambda: len(runs) == 1, 5, message="the first try started")
    running_worker([fails_then_waits], lease_s=0.3, max_jobs=1)
    assert await handle.result(timeout_s=10) == "second"
    await wait_for(lambda: len(hooks_done) == 1, 5, message="the first worker's after_job_end hook done")
    assert runs == [f"{handle.job_id}:1", f"{handle.job_id}:2"]
    assert _lease_warnings(caplog) == []
