"""The cluster benchmark's worker: ``arq bench.cluster_worker.WorkerSettings`` with the project's settings from the
environment (``JOBS_REDIS_URL``, ``JOBS_REDIS_CLUSTER``, ``JOBS_QUEUE_NAME``) and one job that does nothing, so
that Redis's CPU is the hot path's own (enqueue, claim, finish) and no job body's."""

from __future__ import annotations

from src.runner import NO_RETRY, JobContext, job, launch
from src.settings import Settings

launch.install()

_settings = Settings()


@job(name="blank", retry=NO_RETRY)
async def blank(ctx: JobContext) -> None:
    return None


class WorkerSettings:
    functions = (blank,)
    redis_settings = _settings.redis_settings()
    queue_name = _settings.queue_name
    log_level = "WARNING"
