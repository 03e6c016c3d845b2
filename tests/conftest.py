"""Fixtures: one real redis-server per session (free loopback port, temp dir), flushed before each test.

Processes a test starts (``spawn``, ``start_process_worker``) log to files under its ``tmp_path``; when the test
fails, the report shows those logs (``pytest_runtest_makereport`` below).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from src.runner import Codec, JobClient
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from tests.spawn import Spawner
from tests.waiting import SLOW_FACTOR

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


@contextlib.asynccontextmanager
async def worker_running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` in the background for the block, then stop and close it."""
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``CI=true`` each test's timeout (its marker or the ini value) is :data:`SLOW_FACTOR` times longer."""
    if SLOW_FACTOR == 1:
        return
    default_s = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        timeout_s = default_s if marker is None else float(marker.kwargs.get("timeout", marker.args[0]))
        if timeout_s > 0:
            item.add_marker(pytest.mark.timeout(timeout_s * SLOW_FACTOR), append=False)


#: the Spawner of a test, and its reports so far, for showing process logs when it fails
_SPAWNER = pytest.StashKey[Spawner]()
_REPORTS = pytest.StashKey[list[pytest.TestReport]]()


@pytest.fixture
def spawn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Spawner]:
    """Start processes logging to ``tmp_path/logs``; any still running at the end are stopped."""
    spawner = Spawner(tmp_path / "logs")
    request.node.stash[_SPAWNER] = spawner
    yield spawner
    spawner.stop_all()


@pytest.fixture
def start_process_worker(redis_server: RedisServer, spawn: Spawner) -> StartWorker:
    """Real worker processes (``arq <settings class path>``), stopped at the end of the test."""

    def start(settings: str, **env: str) -> subprocess.Popen[bytes]:
        environ = {**os.environ, "JOBS_REDIS_URL": redis_server.url, **env}
        return spawn([sys.executable, "-m", "arq", settings], name=settings.rsplit(".", 1)[-1], env=environ)

    return start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report gets the logs of the processes it started. They are added once teardown has
    stopped the processes (so the logs are complete), to the report of the phase that failed."""
    report = yield
    reports = item.stash.setdefault(_REPORTS, [])
    reports.append(report)
    spawner = item.stash.get(_SPAWNER, None)
    if report.when == "teardown" and spawner is not None:
        failed = next((r for r in reports if r.failed), None)
        if failed is not None:
            for title, text in spawner.logs():
                failed.sections.append((f"log of {title}", text))
    return report
