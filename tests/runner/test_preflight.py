"""Redis that does not answer is one clear error within seconds; unix sockets work end to end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from arq.connections import RedisSettings

from src.runner import Codec, EagerClient, JobClient, RedisUnreachable
from src.runner.preflight import check_redis
from src.runner.redis_server import RedisServer, free_port
from src.runner.worker import Worker
from src.settings import Settings
from tests.sample_jobs import add


@pytest.fixture
def unix_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    # a short path: a unix socket's path must fit in about 100 bytes
    directory = tmp_path_factory.mktemp("ux")
    server = RedisServer(directory, unix_socket=directory / "r.sock", options={"save": "''", "appendonly": "no"})
    server.start()
    yield server
    server.stop()


def test_unreachable_redis_is_one_line_naming_url_variable_and_cause() -> None:
    settings = RedisSettings(host="127.0.0.1", port=free_port(), password="hunter2", database=3)
    started = time.monotonic()
    with pytest.raises(RedisUnreachable) as raised:
        check_redis(settings)
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "\n" not in message and "hunter2" not in message
    assert message.startswith(f"cannot reach Redis at redis://:***@127.0.0.1:{settings.port}/3 (set JOBS_REDIS_URL): ")
    assert "refused" in message.lower()


def test_missing_socket_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(RedisUnreachable, match=f"unix://{tmp_path}/none.sock .*No such file"):
        check_redis(RedisSettings(unix_socket_path=str(tmp_path / "none.sock")))


async def test_client_connect_fails_fast_and_clearly() -> None:
    started = time.monotonic()
    with pytest.raises(
        RedisUnreachable, match=r"cannot reach Redis at redis://localhost:\d+/0 \(set JOBS_REDIS_URL\): "
    ):
        await JobClient.connect(RedisSettings(port=free_port()), Codec())
    assert time.monotonic() - started < 5


async def test_enqueue_by_name_says_it_takes_a_spec(client: JobClient) -> None:
    with pytest.raises(TypeError, match=r"^enqueue\(\) takes a @job spec, got str"):
        await client.enqueue("greet", name="Ada")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^enqueue\(\) takes a @job spec, got str"):
        await EagerClient().enqueue("greet")  # type: ignore[arg-type]


async def test_unix_socket_url_runs_a_job(unix_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_REDIS_URL", unix_redis.url)
    settings = Settings()
    assert unix_redis.url.startswith("unix:///")
    worker = Worker([add], redis_settings=settings.redis_settings(), handle_signals=False, poll_delay=0.01)
    client = await settings.open_client()
    try:
        task = asyncio.create_task(worker.async_run())
        handle = await client.enqueue(add, 2, b=3)
        assert await handle.result(timeout_s=10) == 5
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await worker.close()
        await client.close()
    mode = unix_redis.unix_socket.stat().st_mode & 0o777 if unix_redis.unix_socket else None
    assert mode == 0o700, oct(mode or 0)
