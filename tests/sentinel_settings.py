"""WorkerSettings for the Sentinel tests: the project's settings (``JOBS_REDIS_SENTINELS``, ``JOBS_REDIS_URL``
naming the master) with the fault tests' ``tick`` job."""

from __future__ import annotations

from src.settings import Settings
from tests.fault_settings import tick

_settings = Settings()


class WorkerSettings:
    functions = (tick,)
    redis_settings = _settings.redis_settings()
    lease_s = 2.0
    shutdown_grace_s = 5.0
    poll_delay = 0.2
