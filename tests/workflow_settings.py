"""WorkerSettings for the workflow process tests: ``arq tests.workflow_settings.WorkerSettings`` (our worker)."""

from __future__ import annotations

import os

from arq.connections import RedisSettings

from src.runner import launch
from tests.workflow_jobs import ALL

launch.install()


class WorkerSettings:
    functions = ALL
    redis_settings = RedisSettings.from_dsn(os.environ.get("JOBS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    lease_s = float(os.environ.get("JOBS_LEASE_S", "1"))
    poll_delay = 0.2
