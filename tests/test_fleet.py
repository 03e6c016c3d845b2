"""`hasten worker --workers N`: a supervisor and real worker processes against the test Redis — crashes restarted
(with backoff when they loop), SIGTERM drained, workers recycled after N jobs or past a memory limit."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from src.runner import JobClient
from src.runner import constants as k
from src.runner.fleet import backoff_s
from src.runner.redis_server import RedisServer
from tests.fault_settings import long_nap, tick
from tests.fleet_settings import hog
from tests.metrics_scrape import Samples, http_get, parse, total
from tests.spawn import Spawner, pid_alive
from tests.waiting import SLOW_FACTOR, wait_for

ROOT = Path(__file__).resolve().parent.parent
HASTEN = str(Path(sys.executable).parent / "hasten")
SETTINGS = "tests.fleet_settings.WorkerSettings"
_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def _env(redis_server: RedisServer, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    return {**env, "JOBS_REDIS_URL": redis_server.url, **extra}


def _fleet(spawn: Spawner, redis_server: RedisServer, *options: str, **env: str) -> subprocess.Popen[bytes]:
    command = [HASTEN, "worker", "--settings", SETTINGS, *options]
    return spawn(command, name="fleet", env=_env(redis_server, **env))


def _started(spawn: Spawner, fleet: subprocess.Popen[bytes]) -> list[tuple[int, int]]:
    """(slot, pid) of every worker the supervisor started so far, in order."""
    return [(int(slot), int(pid)) for slot, pid in _STARTED.findall(spawn.output(fleet))]


async def _idle_workers(redis: ArqRedis, n: int) -> None:
    """Until ``n`` workers are up and registered as idle (ready to be handed jobs)."""

    async def registered() -> bool:
        live = await redis.zcount(k.IDLE_KEY_PREFIX + k.default_queue_name, time.time() * 1000, "+inf")
        return int(live) >= n

    await wait_for(registered, 60, message=f"{n} idle workers registered")


async def _exit_code(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    return await asyncio.to_thread(proc.wait, timeout_s * SLOW_FACTOR)


async def _runs(redis: ArqRedis) -> dict[str, int]:
    """How many times each ``tick`` job ran, by job id."""
    return {key.decode(): int(value) for key, value in (await redis.hgetall("runs")).items()}


@pytest.mark.timeout(120)
async def test_a_killed_worker_is_restarted_and_jobs_keep_running(
    redis: ArqRedis, client: JobClient, redis_server: RedisServer, spawn: Spawner
) -> None:
    fleet = _fleet(spawn, redis_server, "--workers", "2")
    await _idle_workers(redis, 2)
    first = [await client.enqueue(tick, 0.05) for _ in range(10)]
    for handle in first:
        await handle.result(timeout_s=20 * SLOW_FACTOR)
    (slot_one, one), (slot_two, two) = sorted(_started(spawn, fleet))
    assert (slot_one, slot_two) == (1, 2)
    os.kill(one, signal.SIGKILL)

    def replaced() -> int | None:
        return next((pid for slot, pid in _started(spawn, fleet)[2:] if slot == 1), None)

    new = await wait_for(replaced, 30, message="worker 1 started again")
    assert new != one and pid_alive(new) and pid_alive(two)
    assert f"worker 1 (pid {one}) was killed by SIGKILL" in spawn.output(fleet)
    second = [await client.enqueue(tick, 0.05) for _ in range(10)]
    for handle in second:
        await handle.result(timeout_s=20 * SLOW_FACTOR)
    # the killed worker was idle: every job ran once
    assert sorted((await _runs(redis)).values()) == [1] * 20
    fleet.send_signal(signal.SIGTERM)
    assert await _exit_code(fleet, 30) == 0
    assert not pid_alive(new) and not pid_alive(two)


@pytest.mark.timeout(180)
async def test_a_crash_loop_is_restarted_with_growing_delays(
    redis: ArqRedis, client: JobClient, redis_server: RedisServer, spawn: Spawner, tmp_path: Path
) -> None:
    crash_file = tmp_path / "crash"
    crash_file.touch()
    fleet = _fleet(spawn, redis_server, "--workers", "1", FLEET_CRASH_FILE=str(crash_file))

    def delays() -> list[float]:
        return [
            float(s)
            for s in re.findall(r"exited with code 1 after [\d.]+s; .*restarting it in ([\d.]+)s", spawn.output(fleet))
        ]

    seen = await wait_for(lambda: delays() if len(delays()) >= 3 else None, 120, message="three crashes logged")
    assert seen[:3] == [0.5, 1.0, 2.0], seen
    assert "crash loop: 3 exits in a row" in spawn.output(fleet)
    crash_file.unlink()  # the cause is fixed: the next try starts and stays up
    await _idle_workers(redis, 1)
    handle = await client.enqueue(tick, 0.0)
    await handle.result(timeout_s=20 * SLOW_FACTOR)
    fleet.send_signal(signal.SIGTERM)
    assert await _exit_code(fleet, 30) == 0


@pytest.mark.timeout(120)
async def test_sigterm_drains_every_worker_and_exits_0(
    redis: ArqRedis, client: JobClient, redis_server: RedisServer, spawn: Spawner
) -> None:
    fleet = _fleet(spawn, redis_server, "--workers", "2")
    await _idle_workers(redis, 2)
    handle = await client.enqueue(long_nap, 2.0)
    await wait_for(lambda: redis.llen(f"starts:{handle.job_id}"), 20, message="the job started")
    fleet.send_signal(signal.SIGTERM)
    assert await _exit_code(fleet, 30) == 0
    # the job finished in the worker draining it, and was not run again
    assert await handle.result(timeout_s=1) in {pid for _, pid in _started(spawn, fleet)}
    assert await redis.llen(f"starts:{handle.job_id}") == 1
    assert "SIGTERM: 2 workers drain" in spawn.output(fleet)
    assert all(not pid_alive(pid) for _, pid in _started(spawn, fleet))


@pytest.mark.timeout(180)
async def test_workers_are_recycled_after_max_jobs_and_no_job_is_lost_or_run_twice(
    redis: ArqRedis, client: JobClient, redis_server: RedisServer, spawn: Spawner
) -> None:
    # two jobs at a time per worker, so that each worker takes its share and reaches the limit
    fleet = _fleet(spawn, redis_server, "--workers", "2", "--max-jobs-per-child", "5", JOBS_MAX_JOBS="2")
    await _idle_workers(redis, 2)
    handles = [await client.enqueue(tick, 0.1) for _ in range(20)]
    for handle in handles:
        await handle.result(timeout_s=60 * SLOW_FACTOR)
    runs = await _runs(redis)
    assert sorted(runs) == sorted(h.job_id for h in handles) and set(runs.values()) == {1}
    recycled = [int(pid) for pid in re.findall(r"\(pid (\d+)\) exited with code 75 .*: recycled", spawn.output(fleet))]
    assert recycled, spawn.output(fleet)
    for pid in recycled:  # each ran at least its limit before it was replaced
        assert await redis.llen(f"started:{pid}") >= 5
    ran_jobs = [pid for _, pid in _started(spawn, fleet) if await redis.llen(f"started:{pid}")]
    assert len(ran_jobs) >= 3  # a replacement ran jobs too
    assert "restarting it" not in spawn.output(fleet)  # recycles are not crashes
    fleet.send_signal(signal.SIGTERM)
    assert await _exit_code(fleet, 30) == 0


@pytest.mark.timeout(120)
async def test_a_worker_past_its_memory_limit_is_recycled(
    redis: ArqRedis, client: JobClient, redis_server: RedisServer, spawn: Spawner
) -> None:
    fleet = _fleet(spawn, redis_server, "--workers", "1", "--max-memory-per-child", "200")
    await _idle_workers(redis, 1)
    [(slot, first)] = _started(spawn, fleet)
    assert slot == 1
    handle = await client.enqueue(hog, 250)
    assert await handle.result(timeout_s=20 * SLOW_FACTOR) == first
    await wait_for(lambda: len(_started(spawn, fleet)) == 2, 30, message="a fresh worker started")
    output = spawn.output(fleet)
    assert re.search(r"recycling this worker: memory at \d+ MiB, limit 200 MiB", output), output
    assert f"worker 1 (pid {first}) exited with code 75" in output
    await _idle_workers(redis, 1)  # the fresh one takes jobs
    again = await client.enqueue(hog, 1)
    assert await again.result(timeout_s=20 * SLOW_FACTOR) == _started(spawn, fleet)[1][1]
    fleet.send_signal(signal.SIGTERM)
    assert await _exit_code(fleet, 30) == 0


@pytest.mark.parametrize(
    ("options", "env", "error"),
    [
        (["--workers", "0"], {}, "error: --workers: expected a whole number of at least 1 (got '0')"),
        (["--workers", "2", "--max-memory-per-child", "lots"], {},
         "error: --max-memory-per-child: expected a whole number of at least 1 (got 'lots')"),
        ([], {"JOBS_WORKERS": "-1"}, "error: JOBS_WORKERS: input should be greater than or equal to 1 (got '-1')"),
        ([], {"JOBS_MAX_JOBS_PER_CHILD": "5"}, "error: --max-jobs-per-child and --max-memory-per-child "
         "(JOBS_MAX_JOBS_PER_CHILD, JOBS_MAX_MEMORY_PER_CHILD_MIB) recycle the workers of a fleet: add --workers N "
         "(JOBS_WORKERS)"),
        (["--workers", "2"], {"JOBS_REDIS_URL": "redis://127.0.0.1:1/0"},
         "cannot reach Redis at redis://127.0.0.1:1/0 (set JOBS_REDIS_URL): Connection refused"),
    ],
)  # fmt: skip
def test_bad_fleet_options_are_one_line(
    options: list[str], env: dict[str, str], error: str, redis_server: RedisServer
) -> None:
    done = subprocess.run(
        [HASTEN, "worker", *options], cwd=ROOT, env={**_env(redis_server), **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].endswith(error), lines


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n) for n in range(8)] == [0, 0.5, 1, 2, 4, 8, 16, 30]


@pytest.mark.timeout(120)
async def test_one_metrics_endpoint_adds_up_the_fleet(
    redis: ArqRedis, client: JobClient, redis_server: RedisServer, spawn: Spawner, tmp_path: Path
) -> None:
    port = _free_port()
    fleet = _fleet(spawn, redis_server, "--workers", "3", JOBS_METRICS_PORT=str(port))
    await _idle_workers(redis, 3)
    handles = await client.enqueue_many([tick.call(0.05) for _ in range(30)])
    for handle in handles:
        await handle.result(timeout_s=20 * SLOW_FACTOR)

    async def added_up() -> Samples | None:
        status, body = await http_get(port, "/metrics")
        assert status == 200, body
        samples = parse(body)
        return samples if total(samples, "hasten_jobs_finished_total") == 30 else None

    samples = await wait_for(added_up, 30, message="the host endpoint's sums reaching the 30 jobs run")
    assert total(samples, "hasten_jobs_started_total") == 30
    assert total(samples, "hasten_jobs_finished_total", outcome="complete") == 30
    ran_in = {pid for _, pid in _started(spawn, fleet)}
    assert len(ran_in) == 3
    fleet.send_signal(signal.SIGTERM)
    assert await _exit_code(fleet, 30) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
