"""A real redis-server restarted under a working worker process: it reconnects by itself and loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from arq.connections import RedisSettings
from redis.exceptions import RedisError

from src.runner import Codec, JobClient
from src.runner.redis_server import RedisServer
from tests.fault_settings import tick

ROOT = Path(__file__).resolve().parent.parent
JOBS = 5000


@pytest.mark.parametrize(("how", "outage_s"), [("shutdown", 1.0), ("sigkill", 1.0), ("shutdown", 10.0)])
async def test_worker_rides_out_a_redis_restart(tmp_path: Path, how: str, outage_s: float) -> None:
    server = RedisServer(tmp_path / "redis", options={"appendonly": "yes", "appendfsync": "always", "save": "''"})
    server.start()
    env = {**os.environ, "JOBS_REDIS_URL": server.url, "JOBS_LEASE_S": "2"}
    client = await JobClient.connect(RedisSettings(port=server.port), Codec())
    worker: subprocess.Popen[str] | None = None
    try:
        await client.enqueue_many([tick.call(0.02) for _ in range(JOBS)])
        worker = subprocess.Popen(
            [sys.executable, "-m", "arq", "tests.fault_settings.WorkerSettings"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        while int(await client.redis.hlen("runs")) < JOBS // 5:
            await asyncio.sleep(0.01)
        server.stop() if how == "shutdown" else server.kill()
        await asyncio.sleep(outage_s)  # an outage, not just a blip
        server.start()
        deadline = time.monotonic() + 60
        while int(await _retrying(client.redis.hlen, "runs")) < JOBS or await _retrying(
            client.redis.zcard, "arq:queue"
        ):
            assert time.monotonic() < deadline, "jobs did not all complete after the restart"
            await asyncio.sleep(0.05)
        runs = [int(v) for v in (await client.redis.hgetall("runs")).values()]
        assert len(runs) == JOBS and min(runs) >= 1  # none lost; jobs in flight at the restart may run twice
        assert sum(r > 1 for r in runs) <= 100  # only those: at most one batch of running jobs
        worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(worker.communicate, timeout=30)
        assert worker.returncode == 0
        # one warning per duty and outage, not one per try
        assert 1 <= output.count("Redis unavailable") <= 6, output
        assert "Redis is back" in output
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
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


async def test_shutdown_during_an_outage_ends_within_the_grace_period_and_a_bound(tmp_path: Path) -> None:
    """SIGTERM while Redis is away: the worker still exits, saying how many outcomes it leaves to the leases."""
    server = RedisServer(tmp_path / "redis", options={"appendonly": "no", "save": "''"}).start()
    env = {**os.environ, "JOBS_REDIS_URL": server.url, "JOBS_LEASE_S": "2", "JOBS_SHUTDOWN_GRACE_S": "1"}
    client = await JobClient.connect(RedisSettings(port=server.port), Codec())
    worker = None
    try:
        await client.enqueue_many([tick.call(0.5) for _ in range(20)])
        worker = subprocess.Popen(
            [sys.executable, "-m", "arq", "tests.fault_settings.WorkerSettings"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        while int(await client.redis.hlen("runs")) < 20:
            await asyncio.sleep(0.01)
        await client.close()
        server.kill()  # Redis gone while 20 jobs run: their outcomes cannot be written
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        output, _ = await asyncio.to_thread(worker.communicate, timeout=30)
        took_s = time.monotonic() - started
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        server.stop()
    assert worker.returncode == 0, output
    # grace 1 s, then each bounded step (leaving the idle set, writing outcomes, the health key) at most 5 s
    assert took_s < 1 + 3 * 5 + 3, output
    assert "20 job outcomes could not be written (Redis unavailable); those jobs run again after their lease" in output
