"""Real worker processes, killed for real: leases bring a crashed worker's job back, and only then."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest
from arq.connections import ArqRedis

from src.runner import JobClient, JobHandle, JobStatus
from src.runner import constants as k
from tests.conftest import StartWorker
from tests.fault_settings import long_nap

LEASE_S = 1.0


@pytest.fixture
def start_worker(start_process_worker: StartWorker) -> StartWorker:
    def start(grace_s: float = 10) -> subprocess.Popen[bytes]:
        return start_process_worker(
            "tests.fault_settings.WorkerSettings", JOBS_LEASE_S=str(LEASE_S), JOBS_SHUTDOWN_GRACE_S=str(grace_s)
        )

    return start


async def _idle_workers(redis: ArqRedis, n: int) -> None:
    """Wait until ``n`` workers are registered as idle (a worker with free slots is, even while jobs run)."""
    for _ in range(500):
        live = await redis.zcount(k.IDLE_KEY_PREFIX + k.default_queue_name, time.time() * 1000, "+inf")
        if live >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{n} idle workers did not register")


async def _starts(redis: ArqRedis, job_id: str, n: int, timeout_s: float = 10) -> list[tuple[int, float]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = await redis.lrange(f"starts:{job_id}", 0, -1)
        if len(rows) >= n:
            return [(int(pid), float(t)) for pid, t in (row.split() for row in rows)]
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} started fewer than {n} times")


async def test_sigkilled_workers_job_runs_again_within_two_leases(
    redis: ArqRedis, client: JobClient, start_worker: StartWorker
) -> None:
    first = start_worker()
    await _idle_workers(redis, 1)
    handle = await client.enqueue(long_nap, 2.0)
    [(pid, _)] = await _starts(redis, handle.job_id, 1)
    assert pid == first.pid
    second = start_worker()
    await _idle_workers(redis, 2)  # the second one is up (the first, with free slots, is registered too)
    first.send_signal(signal.SIGKILL)
    killed_at = time.time()
    starts = await _starts(redis, handle.job_id, 2)
    assert starts[1][0] == second.pid
    assert starts[1][1] - killed_at <= 2 * LEASE_S, starts[1][1] - killed_at
    assert await handle.result(timeout_s=10) == second.pid
    assert (await handle.info()).job_try == 2
    assert len(await redis.lrange(f"starts:{handle.job_id}", 0, -1)) == 2


async def test_a_living_workers_lease_is_renewed(redis: ArqRedis, client: JobClient, start_worker: StartWorker) -> None:
    start_worker()
    await _idle_workers(redis, 1)
    handle = await client.enqueue(long_nap, 3.5 * LEASE_S)
    await _starts(redis, handle.job_id, 1)
    start_worker()
    await handle.result(timeout_s=15)
    # a second worker watched the whole time; the renewed lease kept it from running the job again
    assert len(await redis.lrange(f"starts:{handle.job_id}", 0, -1)) == 1


async def _running_one_job(
    redis: ArqRedis, client: JobClient, start_worker: StartWorker, *, grace_s: float, nap_s: float
) -> tuple[subprocess.Popen[bytes], JobHandle[int]]:
    """A worker process with the given grace period, running one job that naps ``nap_s``."""
    worker = start_worker(grace_s=grace_s)
    await _idle_workers(redis, 1)
    handle = await client.enqueue(long_nap, nap_s)
    await _starts(redis, handle.job_id, 1)
    return worker, handle


def _exit_code_within(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    return proc.wait(timeout=timeout_s)


async def test_sigterm_lets_running_jobs_finish(redis: ArqRedis, client: JobClient, start_worker: StartWorker) -> None:
    worker, handle = await _running_one_job(redis, client, start_worker, grace_s=10, nap_s=1.0)
    worker.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert await asyncio.to_thread(_exit_code_within, worker, 10) == 0
    assert 0.5 < time.monotonic() - started < 5  # it waited for the job, not for the whole grace period
    assert await handle.result(timeout_s=1) == worker.pid
    assert len(await redis.lrange(f"starts:{handle.job_id}", 0, -1)) == 1


async def test_past_the_grace_period_jobs_go_back_without_spending_a_try(
    redis: ArqRedis, client: JobClient, start_worker: StartWorker
) -> None:
    worker, handle = await _running_one_job(redis, client, start_worker, grace_s=0.5, nap_s=5.0)
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(_exit_code_within, worker, 5) == 0
    assert await handle.status() is JobStatus.queued
    assert int(await redis.get(k.retry_key_prefix + handle.job_id) or 0) == 0
    other = start_worker()
    assert await handle.result(timeout_s=10) == other.pid
    assert (await handle.info()).job_try == 1  # the interrupted run did not count


async def test_a_second_signal_stops_at_once(redis: ArqRedis, client: JobClient, start_worker: StartWorker) -> None:
    worker, handle = await _running_one_job(redis, client, start_worker, grace_s=60, nap_s=30.0)
    worker.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(_exit_code_within, worker, 5) == 0
    assert await handle.status() is JobStatus.queued


async def test_a_job_handed_to_a_worker_that_died_runs_elsewhere_within_seconds(
    redis: ArqRedis, client: JobClient, start_process_worker: StartWorker
) -> None:
    """The window the idle hand-off opens: a worker registers as idle, then dies before it takes the job it was
    handed. With the default lease (30 s) the job must not wait for a whole lease."""
    frozen = start_process_worker("tests.fault_settings.WorkerSettings", JOBS_LEASE_S="30")
    await _idle_workers(redis, 1)
    frozen.send_signal(signal.SIGSTOP)  # registered as idle, then gone: it will never pop its list
    try:
        # handed over: to its list, or straight into its blocked pop's reply, which it never reads
        handle = await client.enqueue(long_nap, 0.1)
        started = time.monotonic()
        other = start_process_worker("tests.fault_settings.WorkerSettings", JOBS_LEASE_S="30")
        assert await handle.result(timeout_s=20) == other.pid
        assert time.monotonic() - started < 10  # the hand-off lease (3 s) and a rescan, not a 30 s lease
    finally:
        frozen.send_signal(signal.SIGKILL)
