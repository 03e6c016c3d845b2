"""Fixtures: one real redis-server per session (free loopback port, temp dir), flushed before each test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from src.runner import Codec, JobClient
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
#: starts ``arq <settings>`` in a subprocess against the test Redis, with extra environment variables
StartWorker = Callable[..., "subprocess.Popen[bytes]"]

#: tests run workers with a short poll so they are quick without relying on timing
TEST_POLL_DELAY_S = 0.01


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), options={"save": "''", "appendonly": "no"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_settings(redis_server: RedisServer) -> RedisSettings:
    return RedisSettings(host="127.0.0.1", port=redis_server.port)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> Iterator[pytest.MonkeyPatch]:
    """Process settings pointing at the test Redis (and nothing from a developer's .env)."""
    from src.settings import get_settings

    monkeypatch.chdir(redis_server.data_dir)
    monkeypatch.setenv("JOBS_REDIS_URL", redis_server.url)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture
def codec() -> Codec:
    return Codec()


@pytest.fixture
async def redis(redis_settings: RedisSettings, codec: Codec) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(redis_settings, job_serializer=codec.dumps, job_deserializer=codec.loads)
    await pool.flushdb()
    yield pool
    await pool.aclose(close_connection_pool=True)


@pytest.fixture
async def client(redis: ArqRedis, codec: Codec) -> JobClient:
    return JobClient(redis, codec)


@pytest.fixture
async def make_worker(redis_settings: RedisSettings, codec: Codec) -> AsyncIterator[Callable[..., Worker]]:
    """Build workers on the test Redis; each is closed at the end of the test."""
    workers: list[Worker] = []

    def factory(functions: list[Any], **kwargs: Any) -> Worker:
        kwargs.setdefault("codec", codec)
        kwargs.setdefault("poll_delay", TEST_POLL_DELAY_S)
        w = Worker(functions, redis_settings=redis_settings, handle_signals=False, **kwargs)
        workers.append(w)
        return w

    yield factory
    for w in workers:
        with contextlib.suppress(asyncio.CancelledError):
            await w.close()


@pytest.fixture
async def running_worker(make_worker: Callable[..., Worker]) -> AsyncIterator[Callable[..., Worker]]:
    """Start a worker in the background for the test's duration."""
    tasks: list[asyncio.Task[None]] = []

    def start(functions: list[Any], **kwargs: Any) -> Worker:
        w = make_worker(functions, **kwargs)
        tasks.append(asyncio.create_task(w.async_run()))
        return w

    yield start
    for t in tasks:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t


@pytest.fixture
def start_process_worker(redis_server: RedisServer) -> Iterator[StartWorker]:
    """Real worker processes (``arq <settings class path>``); any still running at the end are killed."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(settings: str, **env: str) -> subprocess.Popen[bytes]:
        environ = {**os.environ, "JOBS_REDIS_URL": redis_server.url, **env}
        args = [sys.executable, "-m", "arq", settings]
        proc = subprocess.Popen(args, cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
