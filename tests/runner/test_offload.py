"""Sync jobs in the worker's thread pool and ``@job(process=True)`` in its process pool, run by an in-process
worker on the real Redis: results, errors, timeouts and aborts, and an event loop that stays free."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from src.runner import JobClient, JobContext, JobFailed, JobStatus, job
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from tests import offload_jobs, sample_jobs
from tests.conftest import ROOT
from tests.spawn import Spawner, pid_alive
from tests.waiting import SLOW_FACTOR, wait_for


class _LagProbe:
    """The event loop's worst lateness while it runs: a timer of 1 ms, measured each time it fires."""

    def __init__(self) -> None:
        self.lateness_s: list[float] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lateness_s.append(time.perf_counter() - before - 0.001)

    def stop(self) -> float:
        """The 90th percentile of the lateness: a sleep on the loop makes most looks ~50 ms late, a loaded machine
        only a few."""
        self._task.cancel()
        ordered = sorted(self.lateness_s)
        return ordered[int(len(ordered) * 0.9)]


async def test_sync_jobs_run_in_the_workers_threads_and_the_loop_stays_free(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([offload_jobs.nap], max_jobs=20, sync_threads=20)
    probe = _LagProbe()
    started = time.perf_counter()
    handles = await client.enqueue_many([offload_jobs.nap.call(0.05) for _ in range(100)])
    assert [await h.result(timeout_s=30) for h in handles] == [0.05] * 100
    elapsed_s, lag_p90_s = time.perf_counter() - started, probe.stop()
    measured = f"100 x sleep(0.05) at 20 threads: {elapsed_s:.3f} s, loop lag p90 {lag_p90_s * 1000:.1f} ms"
    assert 0.25 <= elapsed_s < 2.5 * SLOW_FACTOR, measured  # five rounds of 20 at best; one by one: 5 s
    assert lag_p90_s < 0.03, measured  # sleeps on the loop would make most looks ≥ 50 ms late


def test_a_sync_job_stuck_past_its_timeout_does_not_hold_the_workers_exit(redis_server: RedisServer) -> None:
    script = textwrap.dedent(f"""
        import asyncio
        from arq.connections import RedisSettings
        from src.runner import Codec, JobClient
        from src.runner.worker import Worker
        from tests import offload_jobs

        settings = RedisSettings(host="127.0.0.1", port={redis_server.port})

        async def enqueue():
            client = await JobClient.connect(settings, Codec(), queue_name="{{stuck}}")
            await client.enqueue(offload_jobs.stuck)
            await client.close()

        asyncio.run(enqueue())
        Worker([offload_jobs.stuck], redis_settings=settings, queue_name="{{stuck}}", burst=True,
               handle_signals=False, poll_delay=0.01).run()
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    assert "exceeded its timeout" in done.stderr
    assert time.monotonic() - started < 30  # the thread sleeps 60 s: a pool that joins its threads would wait


async def test_a_sync_job_has_its_context_and_a_validated_result(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([offload_jobs.who])
    handle = await client.enqueue(offload_jobs.who, word="hi")
    assert await handle.result(timeout_s=10) == {"job_id": handle.job_id, "try": 1, "word": "HI"}


async def test_a_process_job_runs_in_a_child_of_the_worker(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([offload_jobs.primes_below])
    first = await (await client.enqueue(offload_jobs.primes_below, n=100_000)).result(timeout_s=30)
    second = await (await client.enqueue(offload_jobs.primes_below, n=10)).result(timeout_s=30)
    assert (first["count"], second["count"]) == (9592, 4)
    assert first["pid"] != os.getpid() and second["pid"] == first["pid"]  # the child is kept for the next job


async def test_a_cpu_bound_process_job_does_not_slow_pickup(
    client: JobClient, running_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    running_worker([offload_jobs.spin, sample_jobs.echo])
    pid_file = tmp_path / "pid"
    busy = await client.enqueue(offload_jobs.spin, pid_file=str(pid_file), seconds=3.0)
    await wait_for(pid_file.exists, 30)  # computing now
    enqueued = time.perf_counter()
    assert await (await client.enqueue(sample_jobs.echo, text="quick")).result(timeout_s=10) == "quick"
    took_s = time.perf_counter() - enqueued
    assert took_s < 0.5 * SLOW_FACTOR, took_s  # on the loop, the spin would hold it for 3 s
    assert await busy.status() is JobStatus.in_progress


async def test_a_process_job_past_its_timeout_has_its_child_killed(
    client: JobClient, running_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    running_worker([offload_jobs.spin_past_timeout])
    pid_file = tmp_path / "pid"
    handle = await client.enqueue(offload_jobs.spin_past_timeout, pid_file=str(pid_file))
    with pytest.raises(JobFailed, match="timeout"):
        await handle.result(timeout_s=30)
    await wait_for(lambda: not pid_alive(int(pid_file.read_text())), 10 * SLOW_FACTOR)


async def test_an_aborted_process_job_has_its_child_killed(
    client: JobClient, running_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    running_worker([offload_jobs.spin])
    pid_file = tmp_path / "pid"
    handle = await client.enqueue(offload_jobs.spin, pid_file=str(pid_file), seconds=60.0)
    await wait_for(pid_file.exists, 30)
    pid = int(pid_file.read_text())
    assert pid_alive(pid)
    assert await handle.abort(timeout_s=10 * SLOW_FACTOR)
    await wait_for(lambda: not pid_alive(pid), 10 * SLOW_FACTOR)


async def test_an_error_in_a_child_comes_back_named_and_permanent_ones_stay_permanent(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([offload_jobs.raises, offload_jobs.lies])
    with pytest.raises(JobFailed, match="ValueError: no good"):
        await (await client.enqueue(offload_jobs.raises)).result(timeout_s=30)
    lied = await client.enqueue(offload_jobs.lies)
    with pytest.raises(JobFailed, match="invalid result"):
        await lied.result(timeout_s=30)
    assert (await lied.info()).job_try == 1  # ResultInvalid is not retried, in a child as in the loop


async def test_a_child_that_dies_fails_its_try_and_the_retry_gets_a_new_one(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([offload_jobs.dies_once])
    assert await (await client.enqueue(offload_jobs.dies_once)).result(timeout_s=30) == 2


def test_the_decorator_refuses_what_a_pool_cannot_run() -> None:
    async def coroutine(ctx: JobContext) -> None:
        pass

    with pytest.raises(TypeError, match="plain def"):
        job(process=True)(coroutine)

    def nested(ctx: JobContext) -> None:
        pass

    with pytest.raises(TypeError, match="top level"):
        job(process=True)(nested)

    class Jobs:
        @staticmethod
        def method(ctx: JobContext) -> None:
            pass

    with pytest.raises(TypeError, match="top level"):
        job(process=True)(Jobs.method)


async def test_errors_from_a_child_keep_their_fate(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    running_worker([offload_jobs.refuses, offload_jobs.flaky_connection, offload_jobs.asks_again, offload_jobs.too_big])
    refused = await client.enqueue(offload_jobs.refuses)
    with pytest.raises(JobFailed, match="order 7 does not exist"):
        await refused.result(timeout_s=30)
    assert (await refused.info()).job_try == 1  # a Permanent subclass: not retried
    assert await (await client.enqueue(offload_jobs.flaky_connection)).result(timeout_s=30) == 3  # retry_on matched
    asked = await client.enqueue(offload_jobs.asks_again)
    assert await asked.result(timeout_s=30) == 2  # Retry(defer=…) kept arq's meaning
    too_big = await client.enqueue(offload_jobs.too_big)
    with pytest.raises(JobFailed, match="ResultInvalid"):
        await too_big.result(timeout_s=30)
    assert (await too_big.info()).job_try == 1


async def test_a_job_registered_under_another_name_runs_in_a_child(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([offload_jobs.heavy])
    assert await (await client.enqueue(offload_jobs.heavy, n=21)).result(timeout_s=30) == 42


async def test_a_sync_job_sees_its_context_variables(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    running_worker([offload_jobs.whose_context])
    handle = await client.enqueue(offload_jobs.whose_context)
    assert await handle.result(timeout_s=10) == handle.job_id


async def test_a_child_ignores_stop_signals_and_a_dead_idle_one_is_replaced(
    client: JobClient, running_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    running_worker([offload_jobs.spin, offload_jobs.primes_below], job_processes=1)
    pid_file = tmp_path / "pid"
    handle = await client.enqueue(offload_jobs.spin, pid_file=str(pid_file), seconds=1.0)
    await wait_for(pid_file.exists, 30)
    child = int(pid_file.read_text())
    os.kill(child, signal.SIGINT)  # a Ctrl-C or a stop to the whole process group reaches the children too
    os.kill(child, signal.SIGTERM)
    assert await handle.result(timeout_s=30) > 0  # the job finished; the worker stops its children itself
    os.kill(child, signal.SIGKILL)  # now idle: dies as the OOM killer would end it
    await wait_for(lambda: not pid_alive(child), 10)
    primes = await (await client.enqueue(offload_jobs.primes_below, n=10)).result(timeout_s=30)
    assert primes["count"] == 4 and primes["pid"] != child


def test_a_child_dies_with_a_killed_worker(redis_server: RedisServer, tmp_path: Path, spawn: Spawner) -> None:
    pid_file = tmp_path / "pid"
    script = textwrap.dedent(f"""
        import asyncio
        from arq.connections import RedisSettings
        from src.runner import Codec, JobClient
        from src.runner.worker import Worker
        from tests import offload_jobs

        if __name__ == "__main__":
            settings = RedisSettings(host="127.0.0.1", port={redis_server.port})

            async def enqueue():
                client = await JobClient.connect(settings, Codec(), queue_name="{{orphans}}")
                await client.enqueue(offload_jobs.spin, pid_file="{pid_file}", seconds=600.0)
                await client.close()

            asyncio.run(enqueue())
            Worker([offload_jobs.spin], redis_settings=settings, queue_name="{{orphans}}", poll_delay=0.01).run()
    """)
    (tmp_path / "worker_script.py").write_text(script)
    worker = spawn(
        [sys.executable, str(tmp_path / "worker_script.py")], name="worker", env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    deadline = time.monotonic() + 30 * SLOW_FACTOR
    while not pid_file.exists():
        assert time.monotonic() < deadline and worker.poll() is None, spawn.output(worker)
        time.sleep(0.05)
    child = int(pid_file.read_text())
    worker.kill()
    worker.wait(10)
    deadline = time.monotonic() + 10 * SLOW_FACTOR
    while pid_alive(child):
        assert time.monotonic() < deadline, "the job's process outlived its worker"
        time.sleep(0.05)


async def test_the_process_wide_pools_serve_one_loop_after_another() -> None:
    from src.runner.offload import Offload

    pools = Offload(processes=1)
    ctx = JobContext(job_id="j", job_try=1, max_tries=1, enqueue_time=datetime.now(UTC), function="primes_below")

    async def two_at_once() -> list[Any]:
        return await asyncio.gather(*(pools.in_process(offload_jobs.primes_below, ctx, {"n": 10}) for _ in range(2)))

    try:
        for _ in range(2):  # each asyncio.run is a new loop, as in eager mode under tests
            results = await asyncio.to_thread(asyncio.run, two_at_once())
            assert [r["count"] for r in results] == [4, 4]
    finally:
        pools.close()


def test_a_process_that_ran_process_jobs_exits_promptly() -> None:
    """Children ignore SIGTERM — multiprocessing's way to stop daemonic children at exit — so the exit kills them
    first; it would otherwise wait for them for ever."""
    script = textwrap.dedent("""
        import asyncio
        from src.runner import EagerClient
        from tests import offload_jobs

        async def main():
            handle = await EagerClient().enqueue(offload_jobs.primes_below, n=100)
            print((await handle.result())["count"])

        if __name__ == "__main__":
            loop = asyncio.new_event_loop()  # kept, with its pool and idle child, until the interpreter exits
            loop.run_until_complete(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "25", done.stderr
