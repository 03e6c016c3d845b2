"""An arq app's WorkerSettings as arq users write them — plain functions, ``arq.cron``, per-job hooks — started
with arq's own command (``arq tests.arq_app_settings.ArqAppSettings``) under our worker (``tests/test_arq_app.py``)."""

from __future__ import annotations

import os
from typing import Any

import arq
from arq.connections import RedisSettings

from src.runner import launch

launch.install()  # what importing src.settings does: arq's command builds our worker


async def multiply(ctx: dict[str, Any], a: int, b: int) -> int:
    return a * b


async def tick(ctx: dict[str, Any]) -> None:
    await ctx["redis"].rpush("app:ticks", ctx["job_id"])


async def note_start(ctx: dict[str, Any]) -> None:
    await ctx["redis"].rpush("app:hooks", f"start {ctx['job_id']}")


async def note_written(ctx: dict[str, Any]) -> None:
    await ctx["redis"].rpush("app:hooks", f"written {ctx['job_id']}")


class ArqAppSettings:
    functions = (multiply,)
    cron_jobs = (arq.cron(tick, second=None),)
    on_job_start = note_start
    after_job_end = note_written
    redis_settings = RedisSettings.from_dsn(os.environ.get("JOBS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    poll_delay = 0.05
