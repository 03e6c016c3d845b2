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
from tests.spawn import Spawner
from tests.waiting import SLOW_FACTOR, wait_for

LEASE_S = 1.0


@pytest.fixture
def start_worker(start_process_worker: StartWorker) -> StartWorker:
    def start(grace_s: float = 10) -> subprocess.Popen[bytes]:
        return start_process_worker(
            "tests.fault_settings.WorkerSettings", JOBS_LEASE_S=str(LEASE_S), JOBS_SHUTDOWN_GRACE_S=str(grace_s)
        )

    return start


async def _idle_workers(redis: ArqRedis, n: int) -> None:
    async def registered() -> bool:
        # live registrations only (a worker with free slots is registered even while jobs run)
        live = await redis.zcount(k.IDLE_KEY_PREFIX + k.default_queue_name, time.time() * 1000, "+inf")
        return int(live) >= n

    await wait_for(registered, 30, message=f"{n} idle workers registered")


async def _starts(redis: ArqRedis, job_id: str, n: int, timeout_s: float = 10) -> list[tuple[int, float]]:
    async def started() -> list[bytes] | None:
        rows = await redis.lrange(f"starts:{job_id}", 0, -1)
        return rows if len(rows) >= n else None

    rows = await wait_for(started, timeout_s, message=f"job {job_id} started {n} times")
    return [(int(pid), float(t)) for pid, t in (row.split() for row in rows)]


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
    assert await handle.result(timeout_s=10 * SLOW_FACTOR) == second.pid
    assert (await handle.info()).job_try == 2
    assert len(await redis.lrange(f"starts:{handle.job_id}", 0, -1)) == 2


async def test_a_living_workers_lease_is_renewed(redis: ArqRedis, client: JobClient, start_worker: StartWorker) -> None:
    start_worker()
    await _idle_workers(redis, 1)
    handle = await client.enqueue(long_nap, 3.5 * LEASE_S)
    await _starts(redis, handle.job_id, 1)
    start_worker()
    await handle.result(timeout_s=15 * SLOW_FACTOR)
    # a second worker watched the whole time; the renewed lease kept it from running the job again
    assert len(await redis.lrange(f"starts:{handle.job_id}", 0, -1)) == 1


async def _running_one_job(
    redis: ArqRedis, client: JobClient, start_worker: StartWorker, *, grace_s: float, nap_s: float
) -> tuple[subprocess.Popen[bytes], JobHandle[int], float]:
    """A worker process with the given grace period, running one job that naps ``nap_s``; and when it started."""
    worker = start_worker(grace_s=grace_s)
    await _idle_workers(redis, 1)
    handle = await client.enqueue(long_nap, nap_s)
    [(_, started_at)] = await _starts(redis, handle.job_id, 1)
    return worker, handle, started_at


def _exit_code_within(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    return proc.wait(timeout=timeout_s)


async def test_sigterm_lets_running_jobs_finish(redis: ArqRedis, client: JobClient, start_worker: StartWorker) -> None:
    worker, handle, job_started_at = await _running_one_job(redis, client, start_worker, grace_s=10, nap_s=1.0)
    worker.send_signal(signal.SIGTERM)
    signalled_at = time.time()
    assert await asyncio.to_thread(_exit_code_within, worker, 10) == 0
    exited_at = time.time()
    # it waited for the job (measured from the job's start: the test notices the start late on a loaded machine),
    # not for the whole grace period
    assert exited_at - job_started_at >= 1.0 and exited_at - signalled_at < 5
    assert await handle.result(timeout_s=1) == worker.pid
    assert len(await redis.lrange(f"starts:{handle.job_id}", 0, -1)) == 1


async def test_past_the_grace_period_jobs_go_back_without_spending_a_try(
    redis: ArqRedis, client: JobClient, start_worker: StartWorker
) -> None:
    worker, handle, _ = await _running_one_job(redis, client, start_worker, grace_s=0.5, nap_s=5.0)
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(_exit_code_within, worker, 5) == 0
    assert await handle.status() is JobStatus.queued
    assert int(await redis.get(k.retry_key_prefix + handle.job_id) or 0) == 0
    other = start_worker()
    assert await handle.result(timeout_s=10 * SLOW_FACTOR) == other.pid  # its start, then the 5 s nap
    assert (await handle.info()).job_try == 1  # the interrupted run did not count


async def test_a_second_signal_stops_at_once(
    redis: ArqRedis, client: JobClient, start_worker: StartWorker, spawn: Spawner
) -> None:
    worker, handle, _ = await _running_one_job(redis, client, start_worker, grace_s=60, nap_s=30.0)
    worker.send_signal(signal.SIGTERM)
    await spawn.wait_for_output(worker, "shutdown on SIGTERM")  # the first signal began the drain
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
