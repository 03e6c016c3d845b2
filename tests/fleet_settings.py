"""WorkerSettings for the fleet tests: `hasten worker --settings tests.fleet_settings.WorkerSettings --workers N`."""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings

from src.runner import NO_RETRY, JobContext, job
from src.settings import Settings
from tests.fault_settings import long_nap, tick

_MIB = 1024 * 1024
#: what ``hog`` allocated, kept for the life of the process (a leak, as the recycling limit is meant for)
_kept: list[bytes] = []


@job(name="hog", retry=NO_RETRY)
async def hog(ctx: JobContext, mib: int) -> int:
    """Allocates ``mib`` MiB and keeps it (written, so it is resident); returns the process's pid."""
    _kept.append(b"\x01" * (mib * _MIB))
    return os.getpid()


async def _startup(ctx: dict[Any, Any]) -> None:
    """Fails while the file named by ``FLEET_CRASH_FILE`` exists: a worker that cannot start (a crash loop)."""
    crash_file = os.environ.get("FLEET_CRASH_FILE")
    if crash_file and os.path.exists(crash_file):
        raise RuntimeError(f"cannot start: {crash_file} exists")


class WorkerSettings:
    functions = (long_nap, tick, hog)
    redis_settings = RedisSettings.from_dsn(os.environ.get("JOBS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    lease_s = float(os.environ.get("JOBS_LEASE_S", "1"))
    shutdown_grace_s = 10.0
    max_jobs = int(os.environ.get("JOBS_MAX_JOBS", "50"))
    poll_delay = 0.2
    on_startup = _startup
    # JOBS_METRICS_PORT / JOBS_METRICS_DIR as the project's settings read them (the supervisor names the directory)
    metrics = Settings().metrics_config()
