"""`jobs dlq …` and `jobs cron` against a real Redis, as an operator would run them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from src.runner import DeadLetters, JobClient, cron
from src.runner import constants as k
from src.runner.cron_state import cron_states
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from tests.sample_jobs import refuse, timed_nap
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def _jobs(redis_server: RedisServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBS_REDIS_URL": redis_server.url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "src.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


async def _at_least(count: Awaitable[int], n: int) -> bool:
    return await count >= n


async def test_list_show_requeue_purge(
    env: pytest.MonkeyPatch, redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([refuse])
    dlq = DeadLetters(client.redis)
    ids = [(await client.enqueue(refuse)).job_id for _ in range(2)]
    await wait_for(lambda: _at_least(dlq.count(), 2), message="two dead letters")

    listed = await asyncio.to_thread(_jobs, redis_server, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert all(job_id in listed.stdout for job_id in ids) and "permanent failure" in listed.stdout

    shown = await asyncio.to_thread(_jobs, redis_server, "dlq", "show", ids[0])
    assert '"reason": "permanent failure"' in shown.stdout and "raise Permanent" in shown.stdout
    missing = await asyncio.to_thread(_jobs, redis_server, "dlq", "show", "nope")
    assert missing.returncode == 1

    requeued = await asyncio.to_thread(_jobs, redis_server, "dlq", "requeue", ids[0])
    assert "requeued 1 job(s)" in requeued.stderr
    purged = await asyncio.to_thread(_jobs, redis_server, "dlq", "purge", "--all", "--function", "refuse")
    assert "purged" in purged.stderr
    # the requeued one failed again (still Permanent) and may be back; none of the originals are left over
    assert all(d.job_id != ids[1] for d in await dlq.page())


async def test_cron_lists_entries_and_their_last_run(
    env: pytest.MonkeyPatch, redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    entry = cron("nightly-nap", "* * * * * *", timed_nap, tz="Europe/Berlin", kwargs={"seconds": 0.01}, missed="all")
    running_worker([timed_nap], cron_entries=[entry])

    async def ran() -> bool:
        return any(s.last_status for s in await cron_states(client.redis))

    await wait_for(ran, message="the entry ran")
    listed = await asyncio.to_thread(_jobs, redis_server, "cron")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "nightly-nap" in line)
    for shown in ("* * * * * * (Europe/Berlin)", "timed_nap", "all/allow", "complete in", "0 overlapping"):
        assert shown in row, (shown, row)


async def test_cron_forget_drops_an_entry_and_flags_overdue_ones(
    env: pytest.MonkeyPatch, redis_server: RedisServer, client: JobClient
) -> None:
    await client.redis.sadd(k.CRON_ENTRIES_KEY, "retired")
    await client.redis.hset(k.CRON_STATE_KEY_PREFIX + "retired", mapping={"schedule": "@daily", "next_tick": 1})
    listed = await asyncio.to_thread(_jobs, redis_server, "cron")
    assert "retired" in listed.stdout and "overdue: no worker runs it" in listed.stdout
    forgot = await asyncio.to_thread(_jobs, redis_server, "cron", "forget", "retired")
    assert forgot.returncode == 0 and "forgot cron entry retired" in forgot.stderr
    assert "retired" not in (await asyncio.to_thread(_jobs, redis_server, "cron")).stdout
    again = await asyncio.to_thread(_jobs, redis_server, "cron", "forget", "retired")
    assert again.returncode == 1
