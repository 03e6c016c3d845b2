"""The real commands in subprocesses: `arq src.settings.WorkerSettings` (run, --check, --burst) and `jobs run`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from src.jobs.maintenance import QueueHealth, record_queue_health
from src.runner import JobStatus
from src.runner.redis_server import RedisServer, free_port
from src.settings import get_settings
from tests.spawn import Spawner
from tests.waiting import SLOW_FACTOR

ROOT = Path(__file__).resolve().parent.parent
ARQ = [sys.executable, "-m", "arq", "src.settings.WorkerSettings"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    return {**env, "JOBS_POLL_DELAY_S": "0.05", **extra}


@pytest.fixture
def arq_worker(redis_server: RedisServer, env: pytest.MonkeyPatch, spawn: Spawner) -> subprocess.Popen[bytes]:
    return spawn(ARQ, name="arq-worker", env=_env(JOBS_REDIS_URL=redis_server.url))


async def test_arq_command_runs_our_worker(
    arq_worker: subprocess.Popen[bytes], redis_server: RedisServer, redis: object, spawn: Spawner
) -> None:
    client = await get_settings().open_client()
    try:
        handle = await client.enqueue(record_queue_health)
        health = await handle.result(timeout_s=15 * SLOW_FACTOR)  # the worker process's start, then the job
        assert isinstance(health, QueueHealth) and health.queue == "arq:queue"
        assert await handle.status() is JobStatus.complete
        check = subprocess.run([*ARQ, "--check"], cwd=ROOT, env=_env(JOBS_REDIS_URL=redis_server.url), check=False)
        assert check.returncode == 0
    finally:
        await client.close()
    arq_worker.send_signal(signal.SIGTERM)
    await asyncio.to_thread(arq_worker.wait, 10 * SLOW_FACTOR)
    output = spawn.output(arq_worker)
    assert "jobs worker on uvloop.Loop: 3 jobs, 1 cron entries, queue 'arq:queue', codec JSON" in output
    check = subprocess.run([*ARQ, "--check"], cwd=ROOT, env=_env(JOBS_REDIS_URL=redis_server.url), check=False)
    assert check.returncode == 1  # health key removed on clean shutdown


async def test_arq_burst_drains_and_exits(redis_server: RedisServer, env: pytest.MonkeyPatch, redis: object) -> None:
    client = await get_settings().open_client()
    try:
        handles = [await client.enqueue(record_queue_health, lag_warn_s=i) for i in range(3)]
        done = subprocess.run([*ARQ, "--burst"], cwd=ROOT, env=_env(JOBS_REDIS_URL=redis_server.url), timeout=30)
        assert done.returncode == 0
        assert [await h.status() for h in handles] == [JobStatus.complete] * 3
    finally:
        await client.close()


def test_jobs_run_starts_everything_and_stops_cleanly(tmp_path: Path, spawn: Spawner) -> None:
    """What `make run` does: embedded Redis + worker + example API; Ctrl-C stops them all."""
    redis_port, api_port = free_port(), free_port()
    env = _env(JOBS_STATE_DIR=str(tmp_path), JOBS_API_PORT=str(api_port))
    proc = spawn(
        [sys.executable, "-m", "src.cli", "run", "--redis-port", str(redis_port)],
        name="jobs-run", env=env, start_new_session=True,
    )  # fmt: skip
    try:
        receipt = asyncio.run(_demo_when_up(api_port))
        assert receipt["status_code"] == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        proc.wait(timeout=30 * SLOW_FACTOR)
    output = spawn.output(proc)
    assert proc.returncode == 0, output
    # the worker got exactly one signal, from the launcher, and drained with its grace period
    assert "shutdown on SIGTERM: taking no new jobs" in output and "shutdown on SIGINT" not in output, output
    assert f"redis://127.0.0.1:{redis_port}/0" in output and f"http://127.0.0.1:{api_port}" in output
    assert not RedisServer(tmp_path, port=redis_port).ping()
    assert any((tmp_path / "redis").rglob("*.aof")), "embedded Redis should persist with AOF"


async def _demo_when_up(port: int) -> dict[str, object]:
    deadline = time.monotonic() + 30 * SLOW_FACTOR
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        while True:
            try:
                response = await http.post("/demo", timeout=15)
                return dict(response.json())
            except httpx2.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
