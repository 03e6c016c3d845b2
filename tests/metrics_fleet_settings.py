"""WorkerSettings for the metrics fleet test: `arq tests.metrics_fleet_settings.WorkerSettings`, its monitoring
read from the environment (``JOBS_METRICS_DIR``) the way ``src.settings`` reads it."""

from __future__ import annotations

import asyncio

from src.runner import NO_RETRY, JobContext, Permanent, job, launch
from src.settings import get_settings

launch.install()


@job(name="pause", retry=NO_RETRY)
async def pause(ctx: JobContext, seconds: float) -> None:
    await asyncio.sleep(seconds)


@job(name="give_up", retry=NO_RETRY)
async def give_up(ctx: JobContext) -> None:
    raise Permanent("fails for good")


_settings = get_settings()


class WorkerSettings:
    functions = (pause, give_up)
    redis_settings = _settings.redis_settings()
    metrics = _settings.metrics_config()
    # two at a time: every process of the fleet gets some of the jobs
    max_jobs = 2
    poll_delay = 0.05
