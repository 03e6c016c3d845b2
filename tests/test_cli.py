"""`hasten dlq …` and `hasten cron` against a real Redis, as an operator would run them: the installed command
(the console script next to this Python) in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import time
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


HASTEN = str(Path(sys.executable).parent / "hasten")


def _hasten(redis_url: str, *args: str, columns: int = 200, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    environ |= {"JOBS_REDIS_URL": redis_url, "COLUMNS": str(columns), **env}
    return subprocess.run(
        [HASTEN, *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def _jobs(redis_server: RedisServer, *args: str) -> subprocess.CompletedProcess[str]:
    return _hasten(redis_server.url, *args)


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
    record = json.loads((await asyncio.to_thread(_jobs, redis_server, "dlq", "show", ids[0], "--json")).stdout)
    assert record["job_id"] == ids[0] and "raise Permanent" in record["traceback"]
    missing = await asyncio.to_thread(_jobs, redis_server, "dlq", "show", "nope")
    assert missing.returncode == 1

    requeued = await asyncio.to_thread(_jobs, redis_server, "dlq", "requeue", ids[0])
    assert "requeued 1 job(s)" in requeued.stderr
    purged = await asyncio.to_thread(_jobs, redis_server, "dlq", "purge", "--all", "--function", "refuse", "--yes")
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
    for shown in ("* * * * * * Europe/Berlin", "timed_nap", "missed=all overlap=allow", "complete in", "0 overlapping"):
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


async def test_dlq_listing_is_whole_and_scriptable(
    env: pytest.MonkeyPatch, redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    empty = await asyncio.to_thread(_jobs, redis_server, "dlq", "list")
    assert empty.returncode == 0 and "no dead jobs" in empty.stderr and empty.stdout == ""
    assert json.loads((await asyncio.to_thread(_jobs, redis_server, "dlq", "list", "--json")).stdout) == []

    running_worker([refuse])
    dlq = DeadLetters(client.redis)
    job_id = (await client.enqueue(refuse.options(job_id="a-rather-long-job-id-" + "x" * 40))).job_id
    while await dlq.count() < 1:
        await asyncio.sleep(0.01)
    # a narrow terminal: the id stays whole on one line, other cells wrap
    narrow = await asyncio.to_thread(_hasten, redis_server.url, "dlq", "list", columns=70)
    assert narrow.returncode == 0, narrow.stderr
    assert any(job_id in line for line in narrow.stdout.splitlines()), narrow.stdout
    listed = json.loads((await asyncio.to_thread(_jobs, redis_server, "dlq", "list", "--json")).stdout)
    assert [(d["job_id"], d["function"], d["reason"]) for d in listed] == [(job_id, "refuse", "permanent failure")]


async def test_dlq_bulk_and_unknown_ids(
    env: pytest.MonkeyPatch, redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([refuse])
    dlq = DeadLetters(client.redis)
    job_id = (await client.enqueue(refuse)).job_id
    while await dlq.count() < 1:
        await asyncio.sleep(0.01)
    for action in ("requeue", "purge"):
        unknown = await asyncio.to_thread(_jobs, redis_server, "dlq", action, "nope")
        assert unknown.returncode == 1 and "no dead job nope" in unknown.stderr
        both = await asyncio.to_thread(_jobs, redis_server, "dlq", action, job_id, "--all")
        assert both.returncode == 2 and "give a job id or --all, not both" in both.stderr
        neither = await asyncio.to_thread(_jobs, redis_server, "dlq", action)
        assert neither.returncode == 2 and "give a job id or --all" in neither.stderr
    unconfirmed = await asyncio.to_thread(_jobs, redis_server, "dlq", "purge", "--all")
    assert unconfirmed.returncode == 1 and "add --yes" in unconfirmed.stderr
    assert await dlq.count() == 1
    confirmed = await asyncio.to_thread(_jobs, redis_server, "dlq", "purge", "--all", "--yes")
    assert confirmed.returncode == 0 and "purged 1 job(s)" in confirmed.stderr
    assert await dlq.count() == 0


async def test_cron_json(
    env: pytest.MonkeyPatch, redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    assert "no cron entries" in (await asyncio.to_thread(_jobs, redis_server, "cron")).stderr
    entry = cron("a-long-entry-name-that-must-not-be-cut", "* * * * * *", timed_nap, kwargs={"seconds": 0.01})
    running_worker([timed_nap], cron_entries=[entry])
    while not await cron_states(client.redis):
        await asyncio.sleep(0.01)
    states = json.loads((await asyncio.to_thread(_jobs, redis_server, "cron", "--json")).stdout)
    assert [(s["name"], s["schedule"], s["job"]) for s in states] == [(entry.name, "* * * * * *", "timed_nap")]
    narrow = await asyncio.to_thread(_hasten, redis_server.url, "cron", columns=60)
    assert any(entry.name in line for line in narrow.stdout.splitlines()), narrow.stdout


def test_unreachable_redis_is_one_line_and_exit_1() -> None:
    started = time.monotonic()
    done = _hasten("redis://:hunter2@127.0.0.1:1/0", "dlq", "list")
    assert time.monotonic() - started < 10
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: cannot reach Redis at redis://:***@127.0.0.1:1/0 (set JOBS_REDIS_URL): Connection refused"
    ]


def test_a_bad_setting_names_its_variable(redis_server: RedisServer) -> None:
    done = _hasten(redis_server.url, "dlq", "list", JOBS_MAX_JOBS="lots")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: JOBS_MAX_JOBS: input should be a valid integer, unable to parse string as an integer (got 'lots')"
    )


def test_python_m_src_cli_still_works(redis_server: RedisServer) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    done = subprocess.run(
        [sys.executable, "-m", "src.cli", "dlq", "list", "--json"], cwd=ROOT, capture_output=True, text=True,
        env={**env, "JOBS_REDIS_URL": redis_server.url}, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)


def test_the_embedded_default_says_how_to_start_it(tmp_path: Path) -> None:
    done = _hasten("", "dlq", "list", JOBS_STATE_DIR=str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: cannot reach Redis at unix://{tmp_path}/redis/redis.sock (set JOBS_REDIS_URL): No such file or "
        "directory (the embedded Redis: start it with `make run` or `make redis`)"
    )


def _purge_all_in_a_terminal(redis_url: str, answer: str) -> subprocess.CompletedProcess[str]:
    """`hasten dlq purge --all` with a terminal on stdin, answering the confirmation with ``answer``."""
    main, terminal = pty.openpty()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    try:
        proc = subprocess.Popen(
            [HASTEN, "dlq", "purge", "--all"], cwd=ROOT, env={**environ, "JOBS_REDIS_URL": redis_url},
            stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        os.write(main, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(terminal)
        os.close(main)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


async def test_purge_all_asks_in_a_terminal(
    env: pytest.MonkeyPatch, redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([refuse])
    dlq = DeadLetters(client.redis)
    await client.enqueue(refuse)
    while await dlq.count() < 1:
        await asyncio.sleep(0.01)
    refused = await asyncio.to_thread(_purge_all_in_a_terminal, redis_server.url, "n")
    assert refused.returncode == 1 and "Purge every dead job for good?" in refused.stderr
    assert await dlq.count() == 1
    agreed = await asyncio.to_thread(_purge_all_in_a_terminal, redis_server.url, "y")
    assert agreed.returncode == 0 and "purged 1 job(s)" in agreed.stderr, agreed.stderr
    assert await dlq.count() == 0
