"""A password-protected redis-server: the password connects, and no log line or repr shows it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from src.runner import JobClient
from src.runner.errors import RedisUnreachable
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from src.settings import Settings
from tests.sample_jobs import add

PASSWORD = "hunter8-redis"


@pytest.fixture
def protected(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", options={"save": "''", "appendonly": "no", "requirepass": PASSWORD})
    server.start()
    yield server
    server.kill()  # SHUTDOWN would need the password


async def test_no_log_line_shows_the_redis_password(
    protected: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.chdir(protected.data_dir)
    monkeypatch.setenv("JOBS_REDIS_URL", f"redis://default:{PASSWORD}@127.0.0.1:{protected.port}/0")
    settings = Settings()
    worker = Worker([add], redis_settings=settings.redis_settings(), codec=settings.codec(), handle_signals=False,
                    poll_delay=0.01)  # fmt: skip
    task = asyncio.create_task(worker.async_run())
    try:
        async with await settings.open_client() as client:
            assert await (await client.enqueue(add, 1)).result(timeout_s=5) == 2
        logging.getLogger("hasten.test").info("settings %s, redis %r", settings, settings.redis_settings())
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()
    monkeypatch.setenv("JOBS_REDIS_URL", f"redis://default:{PASSWORD}-wrong@127.0.0.1:{protected.port}/0")
    wrong = dataclasses.replace(Settings().redis_settings(), conn_retries=1, conn_retry_delay=0)
    with pytest.raises(RedisUnreachable, match="invalid username-password pair") as refused:
        await JobClient.connect(wrong, settings.codec())  # one line naming the URL, its password hidden
    assert PASSWORD not in str(refused.value) and "default:***@" in str(refused.value)
    assert PASSWORD not in caplog.text
