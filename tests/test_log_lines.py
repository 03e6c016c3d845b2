"""A real worker process's log: ``JOBS_LOG_FORMAT=json`` makes every line one JSON object — the worker's, arq's and
the jobs' own — and a line logged inside a job names it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import orjson
import pytest

from src.runner import JobClient, JobFailed
from src.runner.redis_server import RedisServer
from tests import telemetry_jobs
from tests.spawn import ROOT, Spawner
from tests.waiting import SLOW_FACTOR

SETTINGS = "tests.telemetry_jobs.TelemetrySettings"


def _env(redis_server: RedisServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    return {**env, "JOBS_REDIS_URL": redis_server.url, **extra}


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = [orjson.loads(line) for line in lines]  # every line, or this raises
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


async def test_json_log_of_a_worker_process(redis_server: RedisServer, client: JobClient, spawn: Spawner) -> None:
    env = _env(redis_server, JOBS_LOG_FORMAT="json", JOBS_LOG_LEVEL="DEBUG")
    worker = spawn([sys.executable, "-m", "arq", SETTINGS], name="json-worker", env=env)
    said = await client.enqueue(telemetry_jobs.chatty, word="hello")
    assert await said.result(timeout_s=15 * SLOW_FACTOR) == "hello"
    doomed = await client.enqueue(telemetry_jobs.doomed)
    with pytest.raises(JobFailed):
        await doomed.result(timeout_s=10 * SLOW_FACTOR)
    worker.send_signal(signal.SIGTERM)
    await asyncio.to_thread(worker.wait, 10 * SLOW_FACTOR)

    lines = _json_lines(spawn.output(worker))
    job = {"job_id": said.job_id, "function": "chatty", "job_try": 1, "queue": "arq:queue"}
    [own] = [line for line in lines if line["message"] == "said hello"]
    assert own["logger"] == "tests.telemetry_jobs" and own["level"] == "WARNING"
    assert own.items() >= job.items()
    # the worker's per-job DEBUG lines carry the job too
    assert any(line["message"].startswith(f"→ {said.job_id}") and line.items() >= job.items() for line in lines)
    [failed] = [line for line in lines if line["level"] == "ERROR" and line.get("job_id") == doomed.job_id]
    assert failed["function"] == "doomed" and "ValueError" in failed["exc_info"]
    assert "hunter2" not in str(lines)  # the URL's password is redacted in the message and the traceback
    assert any(line["message"].startswith("hasten worker on") and "job_id" not in line for line in lines)

    # arq's own lines go through the same formatter (`--check` logs arq's "Health check failed")
    check = subprocess.run(
        [sys.executable, "-m", "arq", SETTINGS, "--check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    [arq_line] = _json_lines(check.stderr)
    assert check.returncode == 1 and arq_line["logger"] == "arq.worker" and arq_line["level"] == "WARNING"


async def test_text_log_names_the_job(redis_server: RedisServer, client: JobClient, spawn: Spawner) -> None:
    worker = spawn([sys.executable, "-m", "arq", SETTINGS], name="text-worker", env=_env(redis_server))
    said = await client.enqueue(telemetry_jobs.chatty, word="hi")
    assert await said.result(timeout_s=15 * SLOW_FACTOR) == "hi"
    await spawn.wait_for_output(worker, "said hi")
    [line] = [line for line in spawn.output(worker).splitlines() if "said hi" in line]
    assert line.endswith(f"WARNING tests.telemetry_jobs: said hi [job={said.job_id} fn=chatty try=1 queue=arq:queue]")


def test_json_without_its_extra_is_one_clear_line(redis_server: RedisServer) -> None:
    # python-json-logger hidden from the worker: a module of that name that cannot be found
    code = (
        "import sys; sys.modules['pythonjsonlogger'] = None; sys.argv = ['arq', '" + SETTINGS + "']; "
        "from arq.cli import cli; cli()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(redis_server, JOBS_LOG_FORMAT="json"),
        capture_output=True, text=True, timeout=30 * SLOW_FACTOR,
    )  # fmt: skip
    assert done.returncode == 1
    assert "pip install 'hasten[json-logs]'" in done.stderr and "Traceback" not in done.stderr
