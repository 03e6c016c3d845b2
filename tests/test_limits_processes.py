"""Limits across real worker processes (``tests.limit_jobs``): three workers share a function's concurrency and rate
limits; a job over its limit waits without a worker slot, a try or a busy loop; a killed worker's slots come back
within its lease; a limit changed at run time (``hasten limits set``) holds at once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from arq.connections import ArqRedis

from src.runner import JobClient
from src.runner import constants as k
from src.runner.limits import Limit, Rate, declare_limits
from src.runner.redis_server import RedisServer
from tests import limit_jobs
from tests.conftest import ROOT, StartWorker
from tests.waiting import SLOW_FACTOR, wait_for

SETTINGS = "tests.limit_jobs.WorkerSettings"


async def _start_workers(redis: ArqRedis, start: StartWorker, n: int = 3) -> list[subprocess.Popen[bytes]]:
    procs = [start(SETTINGS) for _ in range(n)]

    async def registered() -> bool:
        return int(await redis.zcard(k.WORKERS_KEY_PREFIX + k.default_queue_name)) >= n

    await wait_for(registered, 30, message=f"{n} workers registered")
    return procs


async def _ints(redis: ArqRedis, key: str) -> list[int]:
    return [int(v) for v in await redis.lrange(key, 0, -1)]


async def _commands(redis: ArqRedis) -> int:
    return int((await redis.info("stats"))["total_commands_processed"])


async def _in_progress(redis: ArqRedis) -> int:
    return len([key async for key in redis.scan_iter(match=k.in_progress_key_prefix + "*")])


@pytest.mark.timeout(90)
async def test_three_workers_run_at_most_five_at_once_and_held_jobs_cost_nothing(
    redis: ArqRedis, client: JobClient, start_process_worker: StartWorker
) -> None:
    await _start_workers(redis, start_process_worker)
    handles = [await client.enqueue(limit_jobs.five_at_once, 0.5) for _ in range(30)]
    await wait_for(lambda: redis.llen("peaks:five_at_once"), 10, message="a first start")
    # while 25 wait: they hold no worker slot and nothing polls for them
    before, started_s = await _commands(redis), time.monotonic()
    await asyncio.sleep(0.3)
    per_s = (await _commands(redis) - before) / (time.monotonic() - started_s)
    assert await _in_progress(redis) <= 5
    results = [await client.wait_result(h.job_id, timeout_s=30 * SLOW_FACTOR) for h in handles]
    assert max(await _ints(redis, "peaks:five_at_once")) == 5
    assert {r.job_try for r in results} == {1}, "a held job spent no try"
    # ~10 starts and 10 outcomes a second, each one script call; a busy loop would be thousands
    assert per_s < 400, per_s


@pytest.mark.timeout(90)
async def test_per_key_never_two_runs_for_one_key(
    redis: ArqRedis, client: JobClient, start_process_worker: StartWorker
) -> None:
    await _start_workers(redis, start_process_worker)
    handles = [await client.enqueue(limit_jobs.one_per_customer, c, 0.1) for c in "abcd" * 5]
    handles += [await client.enqueue(limit_jobs.two_per_shop, f"{shop}-{i}", 0.2) for i in range(6) for shop in "xy"]
    for h in handles:
        await h.result(timeout_s=30 * SLOW_FACTOR)
    for customer in "abcd":
        assert set(await _ints(redis, f"peaks:customer-{customer}")) == {1}
    assert max(await _ints(redis, "peaks:all-customers")) > 1, "different keys ran side by side"
    for shop in "xy":
        assert max(await _ints(redis, f"peaks:shop-{shop}")) == 2


@pytest.mark.timeout(90)
async def test_a_killed_workers_slots_come_back_within_its_lease(
    redis: ArqRedis, client: JobClient, start_process_worker: StartWorker
) -> None:
    procs = await _start_workers(redis, start_process_worker)
    for _ in range(15):
        await client.enqueue(limit_jobs.five_at_once, 4.0)
    by_pid = await wait_for(lambda: _five_running(redis, procs), 10, message="five running")
    victim = next(p for p in procs if by_pid.get(p.pid, 0) > 0)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    survivors = [p for p in procs if p is not victim]

    async def back() -> bool:
        running = await _running_by_pid(redis, survivors)
        assert sum(running.values()) <= 5, running  # never more than the limit, the dead worker's slots included
        return sum(running.values()) == 5

    await wait_for(back, 3 * limit_jobs.LEASE_S * SLOW_FACTOR, interval_s=0.05, message="five running on survivors")
    assert time.monotonic() - killed_at <= limit_jobs.LEASE_S + 1.5 * SLOW_FACTOR


async def _running_by_pid(redis: ArqRedis, procs: list[subprocess.Popen[bytes]]) -> dict[int, int]:
    raw = await redis.hgetall("active-by-pid:five_at_once")
    pids = {p.pid for p in procs}
    return {int(pid): int(n) for pid, n in raw.items() if int(pid) in pids}


async def _five_running(redis: ArqRedis, procs: list[subprocess.Popen[bytes]]) -> dict[int, int] | None:
    running = await _running_by_pid(redis, procs)
    return running if sum(running.values()) == 5 else None


@pytest.mark.timeout(120)
async def test_a_rate_of_twenty_a_second_over_three_workers(
    redis: ArqRedis, client: JobClient, start_process_worker: StartWorker
) -> None:
    await _start_workers(redis, start_process_worker)
    await client.enqueue_many([limit_jobs.twenty_a_second.call() for _ in range(230)])
    t0 = await wait_for(lambda: _first_start(redis), 10, message="a first start")
    # while most wait (deferred to the start their rate reserved): Redis is quiet, no worker slot is taken
    await asyncio.sleep(2)
    before, started_s = await _commands(redis), time.monotonic()
    await asyncio.sleep(1)
    per_s = (await _commands(redis) - before) / (time.monotonic() - started_s)
    samples = []
    for _ in range(20):
        samples.append(await _in_progress(redis))
        await asyncio.sleep(0.05)
    await wait_for(lambda: time.time() > t0 + 10.5, 15)
    starts = [float(t) for t in await redis.lrange("starts:twenty_a_second", 0, -1)]
    in_ten_s = sum(1 for t in starts if t0 <= t < t0 + 10)
    assert 180 <= in_ten_s <= 220, in_ten_s
    assert max(samples) <= 3, samples
    # each start wakes the idle workers at its due time (a blocking pop and a claim each, ~15 commands counting those
    # inside the script) and writes one outcome: ~65 commands per start with 3 workers, never a loop between starts
    assert per_s / 20 < 100, per_s


@pytest.mark.timeout(90)
async def test_a_limit_changed_at_run_time_holds_at_once(
    redis_server: RedisServer, redis: ArqRedis, client: JobClient, start_process_worker: StartWorker
) -> None:
    await _start_workers(redis, start_process_worker, 2)
    for _ in range(30):
        await client.enqueue(limit_jobs.five_at_once, 1.0)
    await wait_for(lambda: _active(redis, 5), 10, message="five running")
    code, out, err = await _hasten(redis_server, "limits", "set", "five_at_once", "--max-concurrency", "8")
    assert code == 0 and "five_at_once in arq:queue: max 8" in err, err
    await wait_for(lambda: _active(redis, 8), 5, message="eight running once the limit is 8")
    code, out, err = await _hasten(redis_server, "limits", "--json")
    [row] = [r for r in json.loads(out) if r["function"] == "five_at_once"]
    assert row["max_concurrency"] == 8 and row["running"] == 8 and row["held"] > 0
    assert row["declared"] == {"max_concurrency": 5, "rate": None}
    code, out, err = await _hasten(redis_server, "limits", "set", "five_at_once", "--max-concurrency", "2")
    assert code == 0, err
    await wait_for(lambda: _active(redis, 2), 5, message="down to two as jobs end")
    await redis.delete("peaks:five_at_once")
    await wait_for(lambda: _at_least(redis, "peaks:five_at_once", 6), 10, message="six more starts")
    assert max(await _ints(redis, "peaks:five_at_once")) <= 2
    code, out, err = await _hasten(redis_server, "limits", "set", "nobody", "--max-concurrency", "2")
    assert code == 1 and "function 'nobody' has no limits" in err, err


async def _first_start(redis: ArqRedis) -> float | None:
    first = await redis.lindex("starts:twenty_a_second", 0)
    return None if first is None else float(first)


async def _at_least(redis: ArqRedis, key: str, n: int) -> bool:
    return int(await redis.llen(key)) >= n


async def _active(redis: ArqRedis, n: int) -> bool:
    return int(await redis.get("active:five_at_once") or 0) == n


async def _hasten(server: RedisServer, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "src.cli", *args, cwd=ROOT, env={**os.environ, "JOBS_REDIS_URL": server.url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_limits_unset_and_an_option_in_the_wrong_place(redis_server: RedisServer, redis: ArqRedis) -> None:
    await declare_limits(redis, k.default_queue_name, {"f": Limit(3, Rate(10, 1000))})
    code, out, err = await _hasten(redis_server, "limits", "unset", "f", "--rate")
    assert code == 0 and "f in arq:queue: max 3" in err, err
    code, out, err = await _hasten(redis_server, "limits", "unset", "f")
    assert code == 0 and "f in arq:queue: none" in err, err
    code, out, err = await _hasten(redis_server, "limits", "--queue", "other", "set", "f", "--max-concurrency", "1")
    assert code == 1 and "put --queue after `limits set`" in err, err
    code, out, err = await _hasten(redis_server, "limits", "set", "f", "--rate", "5 per second")
    assert code == 1 and "expected '<count>/<period>'" in err, err
    code, out, err = await _hasten(redis_server, "limits", "--json")
    assert json.loads(out) == [
        {"queue": "arq:queue", "function": "f", "key": None, "max_concurrency": None, "rate": None,
         "declared": {"max_concurrency": 3, "rate": "10/s"}, "running": 0, "held": 0},
    ]  # fmt: skip
