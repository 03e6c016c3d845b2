"""`hasten status`, `inspect`, `enqueue`, `abort`, `purge` and `jobs list` against a real Redis and a real worker,
run as an operator runs them: the installed command in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from arq.connections import ArqRedis

from src.runner import JobClient, JobStatus
from src.runner import constants as k
from src.runner.queue_admin import PAGE_ROWS
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from tests.sample_jobs import add, nap
from tests.test_cli import HASTEN, ROOT, _hasten
from tests.waiting import wait_for


async def _run(redis_server: RedisServer, *args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(_hasten, redis_server.url, *args)
    return done.returncode, done.stdout, done.stderr


async def test_status_shows_counts_and_the_workers_alive(
    redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    await client.enqueue(add.options(defer_by=600), 1)
    worker = running_worker([nap], max_jobs=3)
    running = await client.enqueue(nap, 30)

    async def listed() -> dict[str, Any] | None:
        code, out, err = await _run(redis_server, "status", "--json")
        assert code == 0, err
        [queue] = [q for q in json.loads(out) if q["queue"] == k.default_queue_name]
        return queue if queue["running"] == 1 and queue["workers"] else None

    queue = await wait_for(listed, message="status never showed the running job and its worker")
    assert (queue["queued"], queue["deferred"], queue["retrying"], queue["dead"]) == (0, 1, 0, 0)
    [record] = queue["workers"]
    assert record["worker_id"] == worker.worker_id and record["running_ids"] == [running.job_id]
    assert record["concurrency"] == 3 and record["heartbeat_age_s"] < 60

    code, out, err = await _run(redis_server, "status")
    assert code == 0, err
    assert worker.worker_id in out and "1/3" in out and k.default_queue_name in out


async def test_inspect_names_the_worker_holding_a_running_job(
    redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    worker = running_worker([nap])
    handle = await client.enqueue(nap, 30)
    await wait_for(lambda: _is(handle.status(), JobStatus.in_progress), message="the job never started")
    code, out, err = await _run(redis_server, "inspect", handle.job_id, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["function"] == "nap" and record["status"] == "in_progress" and record["kwargs"] == {"seconds": 30}
    assert record["worker"] == worker.worker_id and 0 < record["lease_left_s"] <= k.DEFAULT_LEASE_S
    code, out, err = await _run(redis_server, "inspect", "no-such-job")
    assert code == 1 and "no job no-such-job" in err and len(err.strip().splitlines()) == 1


async def _is(status: Awaitable[JobStatus], wanted: JobStatus) -> bool:
    return await status == wanted


async def test_enqueue_validates_like_the_client(redis_server: RedisServer, redis: ArqRedis) -> None:
    code, out, err = await _run(
        redis_server, "enqueue", "record_queue_health", "--kwargs", '{"lag_warn_s": 5}', "--defer-by", "600",
        "--job-id", "health-1",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == "health-1"
    score = await redis.zscore(k.default_queue_name, "health-1")
    assert score is not None and score > (await redis.time())[0] * 1000 + 500_000  # deferred by ten minutes

    code, _, err = await _run(redis_server, "enqueue", "record_queue_health", "--kwargs", '{"lag_warn_s": "soon"}')
    assert code == 1 and "lag_warn_s" in err and len(err.strip().splitlines()) == 1
    code, _, err = await _run(redis_server, "enqueue", "no_such_job")
    assert code == 1 and "registered:" in err and "send_email" in err
    code, _, err = await _run(redis_server, "enqueue", "record_queue_health", "--kwargs", "[1]")
    assert code == 1 and "JSON object" in err
    code, _, err = await _run(redis_server, "enqueue", "record_queue_health", "--priority", "2", "--defer-by", "5")
    assert code == 1 and "head start for a job due now" in err and len(err.strip().splitlines()) == 1
    assert await redis.zcard(k.default_queue_name) == 1  # nothing else was enqueued

    code, out, err = await _run(
        redis_server, "enqueue", "record_queue_health", "--priority", "2", "--job-id", "health-urgent"
    )
    assert code == 0, err
    score = await redis.zscore(k.default_queue_name, "health-urgent")
    assert score is not None and score < (await redis.time())[0] * 1000 - 2 * k.PRIORITY_STEP_MS + 5_000


async def test_abort_a_queued_job(redis_server: RedisServer, client: JobClient) -> None:
    handle = await client.enqueue(add.options(defer_by=600), 1)
    code, _, err = await _run(redis_server, "abort", handle.job_id)
    assert code == 0, err
    assert await handle.status() == JobStatus.complete
    code, _, err = await _run(redis_server, "abort", handle.job_id, "--wait", "0")
    assert code == 1 and "was not aborted" in err


async def test_purge_streams_pages_and_leaves_running_jobs(
    redis_server: RedisServer, client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker([nap], max_jobs=1)
    running = await client.enqueue(nap, 30)
    await wait_for(lambda: _is(running.status(), JobStatus.in_progress), message="the job never started")
    waiting = PAGE_ROWS * 2 + 7
    await client.enqueue_many([nap.call(30) for _ in range(waiting)])

    code, _, err = await _run(redis_server, "purge", k.default_queue_name)  # no terminal to confirm on
    assert code == 1 and "--yes" in err
    assert await redis.zcard(k.default_queue_name) == waiting + 1

    code, _, err = await _run(redis_server, "purge", k.default_queue_name, "--yes")
    assert code == 0, err
    assert f"purged {waiting} job(s)" in err
    assert await redis.zrange(k.default_queue_name, 0, -1) == [running.job_id.encode()]
    assert await redis.exists(k.job_key_prefix + running.job_id)


async def test_jobs_list_filters_and_pages(redis_server: RedisServer, client: JobClient, redis: ArqRedis) -> None:
    # due one second apart, in the past: the listing's order is the due time's
    adds = [(await client.enqueue(add.options(defer_by=i - 10), i)).job_id for i in range(5)]
    later = (await client.enqueue(nap.options(defer_by=600), 1)).job_id
    retrying = (await client.enqueue(nap.options(defer_by=900), 2)).job_id
    await redis.set(k.retry_key_prefix + retrying, 1)

    code, out, err = await _run(
        redis_server, "jobs", "list", "--json", "--function", "add", "--offset", "1", "--limit", "2"
    )
    assert code == 0, err
    rows = json.loads(out)
    assert [r["job_id"] for r in rows] == adds[1:3] and {r["state"] for r in rows} == {"queued"}
    code, out, _ = await _run(redis_server, "jobs", "list", "--json", "--status", "retrying")
    assert [(r["job_id"], r["tries"]) for r in json.loads(out)] == [(retrying, 1)]
    code, out, _ = await _run(redis_server, "jobs", "list", "--json", "--status", "deferred")
    assert [r["job_id"] for r in json.loads(out)] == [later]
    code, out, err = await _run(redis_server, "jobs", "list")
    assert code == 0 and all(job_id in out for job_id in [*adds, later, retrying])
    code, _, err = await _run(redis_server, "jobs", "list", "--status", "sleeping")
    assert code == 1 and "--status must be one of" in err


async def test_jobs_list_cursor_time_range_and_prefix(redis_server: RedisServer, client: JobClient) -> None:
    handles = [await client.enqueue(add.options(defer_by=i - 10), i) for i in range(5)]
    ids = [h.job_id for h in handles]
    code, out, err = await _run(redis_server, "jobs", "list", "--json", "--limit", "2")
    assert code == 0, err
    assert [r["job_id"] for r in json.loads(out)] == ids[:2]
    [cursor] = re.findall(r"--cursor (\S+)", err)
    code, out, err = await _run(redis_server, "jobs", "list", "--json", "--cursor", cursor)
    assert code == 0, err
    assert [r["job_id"] for r in json.loads(out)] == ids[2:] and "--cursor" not in err
    due = [r["due_ms"] for r in json.loads((await _run(redis_server, "jobs", "list", "--json"))[1])]
    code, out, err = await _run(redis_server, "jobs", "list", "--json", "--from", str(due[1]), "--to", str(due[3]))
    assert code == 0, err
    assert [r["job_id"] for r in json.loads(out)] == ids[1:4]
    iso = datetime.fromtimestamp(due[3] / 1000, UTC).isoformat()
    code, out, err = await _run(redis_server, "jobs", "list", "--json", "--from", iso)
    assert code == 0, err
    assert [r["job_id"] for r in json.loads(out)] == ids[3:]
    code, out, err = await _run(redis_server, "jobs", "list", "--json", "--prefix", ids[2][:12])
    assert [r["job_id"] for r in json.loads(out)] == [ids[2]]
    code, _, err = await _run(redis_server, "jobs", "list", "--cursor", "soon:x")
    assert code == 1 and "--cursor" in err


@pytest.fixture(autouse=True)
def _clean_env(env: pytest.MonkeyPatch) -> None:
    """Settings from the test Redis (the commands run in subprocesses with JOBS_REDIS_URL)."""


async def test_status_watch_refreshes_in_place_until_ctrl_c(
    redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """In a terminal, ``status --watch`` redraws the same view as counts change, and Ctrl-C ends it cleanly."""
    worker = running_worker([nap])
    main, terminal = pty.openpty()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    proc = subprocess.Popen(
        [HASTEN, "status", "--watch", "--interval", "0.2"], cwd=ROOT, stdout=terminal, stderr=subprocess.PIPE,
        env={**environ, "JOBS_REDIS_URL": redis_server.url, "COLUMNS": "200", "TERM": "xterm"},
    )  # fmt: skip
    os.close(terminal)
    seen = bytearray()

    def read() -> str:
        while select.select([main], [], [], 0)[0]:
            try:
                seen.extend(os.read(main, 65536))
            except OSError:  # the terminal closed
                break
        return seen.decode(errors="replace")

    try:
        await wait_for(lambda: worker.worker_id in read(), 30, message="the first view, with the worker")
        first = len(seen)
        await client.enqueue_many([add.options(defer_by=600).call(i) for i in range(7)])
        await wait_for(
            lambda: re.search(r"arq:queue\s+0\s+0\s+7\s", read()[first:]) is not None, 30,
            message=lambda: f"the view redrawn with 7 deferred jobs: {read()[first:][-2000:]!r}",
        )  # fmt: skip
        proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
        _, errors = proc.communicate()
    stderr = errors.decode()
    assert code == 0 and "Traceback" not in stderr, stderr


async def test_pause_and_resume_a_queue(redis_server: RedisServer, redis: ArqRedis) -> None:
    code, out, err = await _run(redis_server, "pause")
    assert code == 0 and "paused arq:queue" in err, err
    assert await redis.exists(k.PAUSED_KEY_PREFIX + "arq:queue")
    code, out, err = await _run(redis_server, "pause")
    assert code == 0 and "already paused: arq:queue" in err
    code, out, _ = await _run(redis_server, "status", "--json")
    [row] = [q for q in json.loads(out) if q["queue"] == "arq:queue"]
    assert row["paused_since_ms"] is not None
    code, _, err = await _run(redis_server, "resume")
    assert code == 0 and "resumed arq:queue" in err
    assert not await redis.exists(k.PAUSED_KEY_PREFIX + "arq:queue")
    code, _, err = await _run(redis_server, "resume", "other")
    assert code == 0 and "not paused: other" in err
