"""A real redis-server restarted under a working worker process: it reconnects by itself and loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from arq.connections import RedisSettings
from redis.exceptions import RedisError

from src.runner import Codec, JobClient
from src.runner.redis_server import RedisServer
from tests.fault_settings import tick
from tests.spawn import Spawner
from tests.waiting import SLOW_FACTOR, wait_for

JOBS = 5000


@pytest.mark.parametrize(("how", "outage_s"), [("shutdown", 1.0), ("sigkill", 1.0), ("shutdown", 10.0)])
async def test_worker_rides_out_a_redis_restart(tmp_path: Path, spawn: Spawner, how: str, outage_s: float) -> None:
    server = RedisServer(tmp_path / "redis", options={"appendonly": "yes", "appendfsync": "always", "save": "''"})
    server.start()
    env = {**os.environ, "JOBS_REDIS_URL": server.url, "JOBS_LEASE_S": "2"}
    client = await JobClient.connect(RedisSettings(port=server.port), Codec())
    try:
        await client.enqueue_many([tick.call(0.02) for _ in range(JOBS)])
        worker = spawn([sys.executable, "-m", "arq", "tests.fault_settings.WorkerSettings"], name="worker", env=env)

        async def a_fifth_ran() -> bool:
            return int(await client.redis.hlen("runs")) >= JOBS // 5

        await wait_for(a_fifth_ran, 30, message="a fifth of the jobs ran before the restart")
        server.stop() if how == "shutdown" else server.kill()
        await asyncio.sleep(outage_s)  # an outage, not just a blip
        server.start()

        async def all_done() -> bool:
            return int(await _retrying(client.redis.hlen, "runs")) >= JOBS and not await _retrying(
                client.redis.zcard, "arq:queue"
            )

        await wait_for(all_done, 60, interval_s=0.05, message="all jobs completed after the restart")
        runs = [int(v) for v in (await client.redis.hgetall("runs")).values()]
        assert len(runs) == JOBS and min(runs) >= 1  # none lost; jobs in flight at the restart may run twice
        assert sum(r > 1 for r in runs) <= 100  # only those: at most one batch of running jobs
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30 * SLOW_FACTOR) == 0
        output = spawn.output(worker)
        # one warning per duty and outage, not one per try
        assert 1 <= output.count("Redis unavailable") <= 6, output
        assert "Redis is back" in output
    finally:
        spawn.stop_all()  # before its Redis goes
        await client.close()
        server.stop()


async def _retrying(command: object, *args: object) -> int:
    """Our own reads ride out the restart too."""
    for _ in range(200):
        try:
            return int(await command(*args))  # type: ignore[operator]
        except (RedisError, OSError) as e:
            last = e
            await asyncio.sleep(0.05)
    raise last


async def test_shutdown_during_an_outage_ends_within_the_grace_period_and_a_bound(
    tmp_path: Path, spawn: Spawner
) -> None:
    """SIGTERM while Redis is away: the worker still exits, saying how many outcomes it leaves to the leases."""
    server = RedisServer(tmp_path / "redis", options={"appendonly": "no", "save": "''"}).start()
    env = {**os.environ, "JOBS_REDIS_URL": server.url, "JOBS_LEASE_S": "2", "JOBS_SHUTDOWN_GRACE_S": "1"}
    client = await JobClient.connect(RedisSettings(port=server.port), Codec())
    try:
        await client.enqueue_many([tick.call(0.5) for _ in range(20)])
        worker = spawn([sys.executable, "-m", "arq", "tests.fault_settings.WorkerSettings"], name="worker", env=env)

        async def all_running() -> bool:
            return int(await client.redis.hlen("runs")) >= 20

        await wait_for(all_running, 30, message="20 jobs running")
        await client.close()
        server.kill()  # Redis gone while 20 jobs run: their outcomes cannot be written
        worker.send_signal(signal.SIGTERM)
        started = asyncio.get_running_loop().time()
        assert await asyncio.to_thread(worker.wait, 30 * SLOW_FACTOR) == 0
        took_s = asyncio.get_running_loop().time() - started
        output = spawn.output(worker)
    finally:
        spawn.stop_all()
        server.stop()
    # grace 1 s, then each bounded step (leaving the idle set, writing outcomes, the health key) at most 5 s
    assert took_s < 1 + 3 * 5 + 3, output
    assert "20 job outcomes could not be written (Redis unavailable); those jobs run again after their lease" in output
