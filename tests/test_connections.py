"""Redis connections that go silent, a Redis that is full, and a Redis that refuses: real redis-server, a real
TCP proxy in between for the half-open case."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis, RedisSettings

from src.runner import JobClient, JobContext, job
from src.runner import constants as k
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from tests.conftest import worker_running
from tests.proxy import Proxy
from tests.waiting import wait_for

runs: dict[str, int] = {}


@job
async def counted(ctx: JobContext, pause_s: float) -> str:
    runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
    await asyncio.sleep(pause_s)
    return "ok"


def _worker(port: int, **kwargs: object) -> contextlib.AbstractAsyncContextManager[Worker]:
    worker = Worker([counted], redis_settings=RedisSettings(port=port), handle_signals=False, **kwargs)  # type: ignore[arg-type]
    return worker_running(worker)


async def test_a_worker_whose_connections_go_silent_runs_the_next_job_within_seconds(
    redis_server: RedisServer, client: JobClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hasten")
    async with Proxy(redis_server.port).running() as proxy, _worker(proxy.port):
        assert await (await client.enqueue(counted, 0)).result(timeout_s=10) == "ok"  # connections are up
        proxy.blackhole()
        started = time.monotonic()
        handle = await client.enqueue(counted, 0)  # straight to Redis: only the worker's path is broken
        assert await handle.result(timeout_s=20) == "ok", caplog.text
        took_s = time.monotonic() - started
    assert took_s < 10, f"the next job ran {took_s:.1f}s after the connections went silent"
    assert "Redis unavailable" in caplog.text and "Redis is back" in caplog.text


@pytest.fixture
async def full_redis(redis: ArqRedis) -> AsyncIterator[ArqRedis]:
    """The shipped policy (noeviction) at a maxmemory the test lowers; restored afterwards."""
    old = await redis.config_get("maxmemory*")
    await redis.config_set("maxmemory-policy", "noeviction")
    yield redis
    await redis.config_set("maxmemory", old["maxmemory"])
    await redis.config_set("maxmemory-policy", old["maxmemory-policy"])


async def test_a_full_redis_keeps_outcomes_and_writes_them_when_there_is_room(
    redis_server: RedisServer, full_redis: ArqRedis, client: JobClient, caplog: pytest.LogCaptureFixture
) -> None:
    runs.clear()
    async with _worker(redis_server.port, lease_s=10) as worker:
        handle = await client.enqueue(counted, 0.5)
        await wait_for(lambda: runs.get(handle.job_id) == 1)
        await full_redis.config_set("maxmemory", 1)  # every write is refused with OOM from now on
        await wait_for(lambda: worker.jobs_complete == 1)
        await wait_for(lambda: "writing job outcomes: Redis unavailable" in caplog.text)
        assert not await full_redis.exists(k.result_key_prefix + handle.job_id)
        await full_redis.config_set("maxmemory", 0)
        assert await handle.result(timeout_s=10) == "ok"
    assert runs[handle.job_id] == 1  # the outcome was kept, not thrown away for the job to run again
    assert "refused" not in caplog.text  # OOM is an outage, not a refusal


async def test_a_refusing_redis_is_logged_every_time_and_turns_the_health_check_red(
    redis_server: RedisServer, redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hasten")
    async with _worker(redis_server.port, poll_delay=0.05) as worker:
        await wait_for(lambda: redis.exists(worker.health_check_key))
        await redis.set(k.WAKE_KEY_PREFIX + k.default_queue_name, "not a list")  # WRONGTYPE for the blocking pop
        await wait_for(lambda: not_(redis.exists(worker.health_check_key)))
        await wait_for(lambda: len([r for r in caplog.records if r.levelno == logging.ERROR]) >= 3)
        assert "WRONGTYPE" in caplog.text and "needs a fix" in caplog.text
        await redis.delete(k.WAKE_KEY_PREFIX + k.default_queue_name)
        await wait_for(lambda: redis.exists(worker.health_check_key))
    assert "Redis accepts the command again" in caplog.text


async def not_(value: object) -> bool:
    return not await value
