"""The real commands in subprocesses: `arq src.settings.WorkerSettings` (run, --check, --burst) and `hasten worker`.

`hasten run` (`make run`) has its own module, tests/test_local_stack.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from src.jobs.maintenance import QueueHealth, record_queue_health
from src.runner import JobStatus
from src.runner.redis_server import RedisServer
from src.settings import get_settings
from tests.spawn import Spawner
from tests.waiting import SLOW_FACTOR

ROOT = Path(__file__).resolve().parent.parent
ARQ = [sys.executable, "-m", "arq", "src.settings.WorkerSettings"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    return {**env, "JOBS_POLL_DELAY_S": "0.05", **extra}


@pytest.fixture
def arq_worker(redis_server: RedisServer, env: pytest.MonkeyPatch, spawn: Spawner) -> subprocess.Popen[bytes]:
    return spawn(ARQ, name="arq-worker", env=_env(JOBS_REDIS_URL=redis_server.url))


async def test_arq_command_runs_our_worker(
    arq_worker: subprocess.Popen[bytes], redis_server: RedisServer, redis: object, spawn: Spawner
) -> None:
    client = await get_settings().open_client()
    try:
        handle = await client.enqueue(record_queue_health)
        health = await handle.result(timeout_s=15 * SLOW_FACTOR)  # the worker process's start, then the job
        assert isinstance(health, QueueHealth) and health.queue == "arq:queue"
        assert await handle.status() is JobStatus.complete
        check = subprocess.run([*ARQ, "--check"], cwd=ROOT, env=_env(JOBS_REDIS_URL=redis_server.url), check=False)
        assert check.returncode == 0
    finally:
        await client.close()
    arq_worker.send_signal(signal.SIGTERM)
    await asyncio.to_thread(arq_worker.wait, 10 * SLOW_FACTOR)
    output = spawn.output(arq_worker)
    # the example jobs and cron entry, and however many a user added (README, "Writing a job")
    started = re.search(r"worker on uvloop.Loop: (\d+) jobs, (\d+) cron entries, queue 'arq:queue', codec JSON", output)
    assert started is not None and int(started[1]) >= 3 and int(started[2]) >= 1, output
    after = subprocess.run(
        [*ARQ, "--check"], cwd=ROOT, env=_env(JOBS_REDIS_URL=redis_server.url), capture_output=True, text=True
    )
    assert after.returncode == 1  # health key removed on clean shutdown
    # in our log format, like every other line
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING arq\.worker: Health check failed", after.stderr)


async def test_arq_burst_drains_and_exits(redis_server: RedisServer, env: pytest.MonkeyPatch, redis: object) -> None:
    client = await get_settings().open_client()
    try:
        handles = [await client.enqueue(record_queue_health, lag_warn_s=i) for i in range(3)]
        done = subprocess.run([*ARQ, "--burst"], cwd=ROOT, env=_env(JOBS_REDIS_URL=redis_server.url), timeout=30)
        assert done.returncode == 0
        assert [await h.status() for h in handles] == [JobStatus.complete] * 3
    finally:
        await client.close()


HASTEN = str(Path(sys.executable).parent / "hasten")


@pytest.mark.parametrize("command", [ARQ, [HASTEN, "worker"]], ids=["arq", "hasten"])
def test_worker_without_redis_stops_at_once_with_one_line(command: list[str], tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=ROOT, env=_env(JOBS_REDIS_URL="redis://:hunter2@127.0.0.1:1/0"), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and time.monotonic() - started < 30, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    expected = "cannot reach Redis at redis://:***@127.0.0.1:1/0 (set JOBS_REDIS_URL): Connection refused"
    assert lines[0].endswith(expected)


def test_a_bad_cron_entry_stops_the_worker_with_its_name(redis_server: RedisServer) -> None:
    """The README's example mistake: the worker refuses to start and says which entry and why."""
    code = textwrap.dedent("""
        import sys, types
        from src.runner import cron
        from src.jobs.maintenance import record_queue_health

        table = types.ModuleType("src.cron")  # stands in for src/cron.py with a typo in it
        def __getattr__(name):
            if name == "TABLE":
                return [cron("nightly-report", "30 2 * * *", record_queue_health, tz="Europe/Berln")]
            raise AttributeError(name)
        table.__getattr__ = __getattr__
        sys.modules["src.cron"] = table
        import src.cli, examples.fastapi_app  # producers and the API do not look at the table
        sys.argv = ["hasten", "worker"]
        src.cli.main()
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(JOBS_REDIS_URL=redis_server.url), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        "error: cron entry 'nightly-report': unknown time zone 'Europe/Berln' (use an IANA name)"
    ), done.stderr


def test_arq_command_with_a_bad_setting_says_one_line() -> None:
    done = subprocess.run(
        ARQ, cwd=ROOT, env=_env(JOBS_LOG_LEVEL="loud"), capture_output=True, text=True, timeout=60
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout + done.stderr == (
        "error: JOBS_LOG_LEVEL: input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' (got 'loud')\n"
    )


def test_arq_check_without_redis_is_one_line() -> None:
    done = subprocess.run(
        [*ARQ, "--check"], cwd=ROOT, env=_env(JOBS_REDIS_URL="redis://:hunter2@127.0.0.1:1/0"), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        "cannot reach Redis at redis://:***@127.0.0.1:1/0 (set JOBS_REDIS_URL): Connection refused"
    )
