"""A worker process imports what it runs and nothing else: the template's worker (its jobs, cron table and default
settings) started by arq's command does not load the web stack, the command line's libraries, the SMTP or HTTP
clients its jobs use only when they run, or the telemetry SDKs while they are off. Each of them is memory that
every worker process of a fleet would hold (README "Performance")."""

from __future__ import annotations

import os
import sys

import orjson
import pytest
from arq.connections import ArqRedis

from src.runner.redis_server import RedisServer
from tests.import_settings import MODULES_KEY
from tests.spawn import Spawner
from tests.waiting import wait_for

#: top-level packages a started worker must not hold (module name prefixes)
NOT_IN_A_WORKER = (
    "fastapi", "starlette", "uvicorn", "jinja2",  # the dashboard and the example API
    "typer", "rich",  # the hasten command line
    "aiosmtplib", "httpx2", "httpcore",  # clients of the template's jobs, imported when a job first runs
    "sentry_sdk", "opentelemetry", "prometheus_client", "sqlalchemy",  # extras, off unless switched on
    "src.runner.dashboard",
)  # fmt: skip


@pytest.mark.timeout(60)
async def test_a_started_worker_holds_none_of_the_heavy_modules(
    redis_server: RedisServer, redis: ArqRedis, spawn: Spawner
) -> None:
    env = {key: v for key, v in os.environ.items() if not key.startswith("JOBS_")}
    env["JOBS_REDIS_URL"] = redis_server.url
    worker = spawn([sys.executable, "-m", "arq", "tests.import_settings.WorkerSettings"], name="worker", env=env)
    await wait_for(lambda: redis.exists(MODULES_KEY), 30, message="the worker started")
    modules: list[str] = orjson.loads(await redis.get(MODULES_KEY))
    assert "src.jobs.email" in modules and "src.jobs.webhooks" in modules  # the template's jobs are loaded …
    loaded = sorted({p for p in NOT_IN_A_WORKER for m in modules if m == p or m.startswith(p + ".")})
    assert not loaded, f"a started worker imported {loaded}"  # … but not what they use only when they run
    assert worker.poll() is None
