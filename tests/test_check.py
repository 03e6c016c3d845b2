"""`hasten check` against a real worker process: exit code 0 ready, 1 alive but not ready, 2 not alive, from the
worker's endpoint and from the worker registry in Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from src.runner import constants as k
from src.runner.redis_server import RedisServer
from tests.spawn import ROOT, Spawner
from tests.test_metrics_fleet import _free_port
from tests.waiting import wait_for

HASTEN = str(Path(sys.executable).parent / "hasten")


def _check(env: dict[str, str], *args: str) -> tuple[int, str]:
    done = subprocess.run([HASTEN, "check", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout.strip()


@pytest.mark.timeout(90)
async def test_check_exit_codes_from_the_endpoint_and_from_redis(
    redis_server: RedisServer, redis: ArqRedis, spawn: Spawner
) -> None:
    env = {key: v for key, v in os.environ.items() if not key.startswith("JOBS_")}
    env |= {"JOBS_REDIS_URL": redis_server.url, "JOBS_METRICS_PORT": str(_free_port())}
    worker = spawn([sys.executable, "-m", "arq", "src.settings.WorkerSettings"], name="worker", env=env)
    await spawn.wait_for_output(worker, "metrics and probes at")

    async def check(*args: str) -> tuple[int, str]:
        return await asyncio.to_thread(_check, env, *args)

    assert await check() == (0, "ready")
    assert (await check("--via-redis"))[0] == 0

    await redis.execute_command("CLIENT", "PAUSE", "5000", "ALL")  # type: ignore[no-untyped-call]
    code, said = await check("--live")  # a container health check: Redis away is no reason to restart the worker
    assert code == 0 and said.startswith("alive, not ready: Redis unreachable"), said
    code, said = await check()
    assert code == 1 and said.startswith("alive, not ready: Redis unreachable"), said
    await wait_for(lambda: _ready_via_endpoint(env), message="ready again once Redis answers")
    assert await check() == (0, "ready")

    worker.send_signal(signal.SIGSTOP)  # its event loop stops answering: not alive, whatever Redis says
    try:
        code, said = await check()
        assert code == 2 and said.startswith("not alive"), said
        assert (await check("--live"))[0] == 1
        # the registry sees its heartbeat age: alive (the record has not expired) but not ready
        await wait_for(lambda: _stale(env), 20, message="the stopped worker's heartbeat stale")
    finally:
        worker.send_signal(signal.SIGCONT)
    await wait_for(lambda: _ready_via_redis(env), 20, message="its heartbeat fresh again")

    worker.send_signal(signal.SIGTERM)
    await asyncio.to_thread(worker.wait, 30)
    assert await redis.zcard(k.WORKERS_KEY_PREFIX + k.default_queue_name) == 0
    code, said = await check()
    assert code == 2 and said.startswith("not alive"), said
    code, said = await check("--via-redis")
    assert code == 2 and "no worker of queue 'arq:queue' alive on " in said, said
    code, said = _check({**env, "JOBS_REDIS_URL": "redis://127.0.0.1:1"}, "--via-redis")
    assert code == 2 and said.startswith("not reachable: cannot reach Redis"), said


async def _stale(env: dict[str, str]) -> bool:
    code, said = await asyncio.to_thread(_check, env, "--via-redis")
    return code == 1 and "none with a recent heartbeat" in said


async def _ready_via_redis(env: dict[str, str]) -> bool:
    return (await asyncio.to_thread(_check, env, "--via-redis"))[0] == 0


async def _ready_via_endpoint(env: dict[str, str]) -> bool:
    return (await asyncio.to_thread(_check, env))[0] == 0
