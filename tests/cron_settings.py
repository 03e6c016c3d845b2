"""WorkerSettings for the process-level cron tests (``arq tests.cron_settings.FleetSettings`` …)."""

from __future__ import annotations

import os

from arq.connections import RedisSettings

from src.runner import JobContext, cron, job, launch

launch.install()


@job(name="note_tick")
async def note_tick(ctx: JobContext) -> None:
    """Notes which tick ran (its job id) and in which process."""
    await ctx.redis.rpush("ticks", f"{ctx.job_id} {os.getpid()}")


class _Base:
    functions = (note_tick,)
    redis_settings = RedisSettings.from_dsn(os.environ.get("JOBS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    lease_s = 2.0
    poll_delay = 0.2


class FleetSettings(_Base):
    cron_entries = (cron("every-second", "* * * * * *", note_tick),)


class MissedSettings(_Base):
    cron_entries = tuple(
        cron(f"missed-{policy}", "*/2 * * * * *", note_tick, missed=policy) for policy in ("skip", "latest", "all")
    )
