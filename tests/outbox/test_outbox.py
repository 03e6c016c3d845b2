"""Enqueue with the database commit, against real databases — PostgreSQL from Debian's packages and SQLite — and
the real Redis: a rollback enqueues nothing, a commit reaches a worker through the relay, a relay killed between
its Redis write and its delete still gets each job run once, and 10,000 rows move in batches."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from pydantic import SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from src.runner import JobClient, JobStatus
from src.runner import constants as k
from src.runner.outbox import OutboxRelay, outbox_table
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from tests.conftest import ROOT
from tests.outbox_jobs import count_run, one_order_at_a_time
from tests.postgres_server import PostgresServer
from tests.spawn import Spawner
from tests.waiting import SLOW_FACTOR

ARTIFACTS = ROOT / "test-artifacts"

orders = Table("orders", MetaData(), Column("id", Integer, primary_key=True), Column("state", String(20)))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["postgres", "sqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").url
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for table in (outbox_table, orders):
            await conn.run_sync(table.metadata.drop_all)
            await conn.run_sync(table.metadata.create_all)
    yield engine
    await engine.dispose()


async def _outbox_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(outbox_table))).scalar_one())


async def test_a_rollback_enqueues_nothing(engine: AsyncEngine, client: JobClient, redis: ArqRedis) -> None:
    sessions = async_sessionmaker(engine)
    with pytest.raises(RuntimeError, match="payment declined"):
        async with sessions() as session, session.begin():
            await session.execute(insert(orders).values(id=1, state="paid"))
            await client.enqueue_in(session, count_run, order_id=1)
            raise RuntimeError("payment declined")
    assert await _outbox_rows(engine) == 0
    assert await OutboxRelay(sessions, client).relay_once() == 0
    assert await redis.zcard(client.queue_name) == 0


async def test_a_commit_reaches_the_worker_through_the_relay(
    engine: AsyncEngine, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    sessions = async_sessionmaker(engine)
    async with sessions() as session, session.begin():
        await session.execute(insert(orders).values(id=2, state="paid"))
        handle = await client.enqueue_in(session, count_run, order_id=2)
    assert await handle.status() is JobStatus.not_found  # committed, not yet relayed
    assert await OutboxRelay(sessions, client).relay_once() == 1
    assert await _outbox_rows(engine) == 0
    running_worker([count_run])
    assert await handle.result(timeout_s=10) == 1


async def test_a_relayed_job_of_a_limited_function_keeps_to_its_limit(
    engine: AsyncEngine, client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    sessions = async_sessionmaker(engine)
    async with sessions() as session, session.begin():
        handles = [await client.enqueue_in(session, one_order_at_a_time, order_id=n) for n in range(6)]
    assert await OutboxRelay(sessions, client).relay_once() == 6
    assert all([await redis.exists(k.LIMIT_OF_KEY_PREFIX + h.job_id) for h in handles])  # the limit entry went too
    running_worker([one_order_at_a_time], max_jobs=10)
    assert [await h.result(timeout_s=10) for h in handles] == list(range(6))
    assert max(int(p) for p in await redis.lrange("test:peaks", 0, -1)) == 1


async def test_a_relay_killed_after_its_redis_write_still_gets_the_job_run_once(
    engine: AsyncEngine, client: JobClient, redis: ArqRedis, redis_server: RedisServer,
    running_worker: Callable[..., Worker],
) -> None:  # fmt: skip
    sessions = async_sessionmaker(engine)
    async with sessions() as session, session.begin():
        handle = await client.enqueue_in(session, count_run, order_id=3)
    script = textwrap.dedent(f"""
        import asyncio, os, signal
        from arq.connections import RedisSettings
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
        from src.runner import Codec, JobClient
        from src.runner.outbox import OutboxRelay

        async def die(self, session, ids):  # the Redis write is done, the delete never happens
            os.kill(os.getpid(), signal.SIGKILL)

        async def main():
            client = await JobClient.connect(RedisSettings(host="127.0.0.1", port={redis_server.port}), Codec())
            OutboxRelay._delete = die
            await OutboxRelay(async_sessionmaker(create_async_engine({engine.url.render_as_string(False)!r})),
                              client).relay_once()

        asyncio.run(main())
    """)
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    assert await redis.zcard(client.queue_name) == 1  # written to Redis …
    assert await _outbox_rows(engine) == 1  # … and still in the outbox
    assert await OutboxRelay(sessions, client).relay_once() == 1  # sent again: the same id, not written twice
    assert await _outbox_rows(engine) == 0
    assert await redis.zcard(client.queue_name) == 1
    running_worker([count_run])
    assert await handle.result(timeout_s=10) == 1
    assert await redis.get("test:runs:3") == b"1"


async def test_enqueue_after_commit_sends_on_commit_and_forgets_on_rollback(
    engine: AsyncEngine, client: JobClient, redis: ArqRedis
) -> None:
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        async with session.begin():
            rolled_back = await client.enqueue_after_commit(session, count_run, order_id=4)
            await session.rollback()
        async with session.begin():
            committed = await client.enqueue_after_commit(session, count_run, order_id=5)
            assert await committed.status() is JobStatus.not_found  # not before the commit
    for _ in range(200):  # sent by a task the commit started
        if await committed.status() is JobStatus.queued:
            break
        await asyncio.sleep(0.01)
    assert await committed.status() is JobStatus.queued
    assert await rolled_back.status() is JobStatus.not_found


async def test_ten_thousand_rows_move_in_batches(engine: AsyncEngine, client: JobClient, redis: ArqRedis) -> None:
    sessions = async_sessionmaker(engine)
    n = 10_000
    async with sessions() as session, session.begin():
        for i in range(n):
            await client.enqueue_in(session, count_run, order_id=i)
    # two relays share the rows where the database locks rows (PostgreSQL); SQLite: one
    relays = [OutboxRelay(sessions, client, batch=500) for _ in range(2 if engine.dialect.name == "postgresql" else 1)]
    started = time.perf_counter()
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        deadline = time.monotonic() + 120 * SLOW_FACTOR
        while sum(r.relayed for r in relays) < n:
            assert time.monotonic() < deadline, f"{sum(r.relayed for r in relays)} of {n} relayed"
            await asyncio.sleep(0.01)
        elapsed_s = time.perf_counter() - started
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(r.relayed for r in relays) == n  # each row once, however the two relays split them
    assert await redis.zcard(client.queue_name) == n
    assert await _outbox_rows(engine) == 0
    ARTIFACTS.mkdir(exist_ok=True)  # the rate, for the record (speed is measured in bench/, not asserted here)
    database = engine.url.get_backend_name()
    figures = {"database": database, "rows": n, "seconds": round(elapsed_s, 3), "rows_per_s": round(n / elapsed_s),
               "split": [r.relayed for r in relays]}  # fmt: skip
    (ARTIFACTS / f"outbox-{database}.json").write_text(json.dumps(figures))


async def test_a_worker_with_an_outbox_url_relays_it(
    engine: AsyncEngine, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([count_run], outbox_url=SecretStr(engine.url.render_as_string(hide_password=False)))
    async with async_sessionmaker(engine)() as session, session.begin():
        handle = await client.enqueue_in(session, count_run, order_id=6)
    deadline = time.monotonic() + 10 * SLOW_FACTOR
    while await handle.status() is JobStatus.not_found:  # until the relay has moved it
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert await handle.result(timeout_s=10 * SLOW_FACTOR) == 1
    assert await _outbox_rows(engine) == 0


async def test_the_relay_command(
    engine: AsyncEngine, client: JobClient, redis: ArqRedis, redis_server: RedisServer, spawn: Spawner
) -> None:
    async with async_sessionmaker(engine)() as session, session.begin():
        handle = await client.enqueue_in(session, count_run, order_id=7)
    env = {**os.environ, "JOBS_REDIS_URL": redis_server.url}
    url = engine.url.render_as_string(hide_password=False)
    relay = spawn([sys.executable, "-m", "src.cli", "outbox", "relay", "--db", url], name="relay", env=env)
    deadline = time.monotonic() + 30 * SLOW_FACTOR
    # relayed: in Redis, and its row deleted (the relay's transaction committed; a SIGINT between the two would
    # leave the row to be sent again, by design)
    while await handle.status() is not JobStatus.queued or await _outbox_rows(engine):
        assert time.monotonic() < deadline and relay.poll() is None, spawn.output(relay)
        await asyncio.sleep(0.05)
    relay.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(relay.wait, 10 * SLOW_FACTOR) == 0
    assert "stopped" in spawn.output(relay)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "error: no database: pass --db or set JOBS_OUTBOX_URL"),
        (["--db", "nosuchdb://x"], "outbox database URL: NoSuchModuleError"),
    ],
)
def test_the_relay_command_refuses_a_missing_or_unusable_database(
    redis_server: RedisServer, args: list[str], says: str
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    command = [sys.executable, "-m", "src.cli", "outbox", "relay", *args]
    done = subprocess.run(command, cwd=ROOT, env={**env, "JOBS_REDIS_URL": redis_server.url}, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode in (1, 2) and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


async def test_a_table_made_before_the_limit_column_still_relays_unlimited_jobs(
    tmp_path: Path, client: JobClient, redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """An outbox table created by an earlier version (no ``limit_entry`` column) keeps working for jobs without a
    limit: the write leaves the column out, the relay reads the columns the table has and says once what to add."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    old = Table("hasten_outbox", MetaData(), *(c._copy() for c in outbox_table.columns if c.name != "limit_entry"))
    async with engine.begin() as conn:
        await conn.run_sync(old.metadata.create_all)
    sessions = async_sessionmaker(engine)
    async with sessions() as session, session.begin():
        handle = await client.enqueue_in(session, count_run, order_id=7)
    relay = OutboxRelay(sessions, client)
    with caplog.at_level("WARNING", logger="hasten.outbox"):
        assert await relay.relay_once() == 1
        assert await relay.relay_once() == 0
    assert [r.getMessage() for r in caplog.records].count(
        "outbox table hasten_outbox has no limit_entry column: jobs are relayed without their limits; add it with "
        "ALTER TABLE hasten_outbox ADD COLUMN limit_entry TEXT"
    ) == 1
    assert await handle.status() is JobStatus.queued
    await engine.dispose()
