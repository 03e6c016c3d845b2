"""``hasten worker``: one worker process, as ``arq src.settings.WorkerSettings`` runs it; or, with ``--workers N``
(``JOBS_WORKERS``), N of them under a supervisor that restarts and recycles them (``src/runner/fleet.py``).

The supervisor checks the settings and Redis first, so a mistake is one line and exit code 1, not N workers in a
crash loop. Each worker it starts is ``hasten worker --fleet-child`` (hidden): one process whatever
``JOBS_WORKERS`` says, given the recycling limits (``src/runner/recycle.py``), exiting with
:data:`~src.runner.recycle.RECYCLE_EXIT_CODE` when it was recycled.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from arq.utils import import_string

from src.runner import logs
from src.runner.errors import SettingsInvalid
from src.runner.fleet import Fleet
from src.runner.launch import create_worker, worker_kwargs
from src.runner.preflight import check_redis
from src.runner.recycle import RECYCLE_EXIT_CODE, Recycler
from src.settings import get_settings

logger = logging.getLogger("hasten.fleet")

DEFAULT_SETTINGS = "src.settings.WorkerSettings"


def run_worker(
    *,
    settings: str = DEFAULT_SETTINGS,
    burst: bool = False,
    workers: str | None = None,
    max_jobs_per_child: str | None = None,
    max_memory_per_child: str | None = None,
    fleet_child: bool = False,
) -> int:
    """The command's exit code. Options given as text are checked here, so a bad one is one line like a bad
    setting (an option wins over its ``JOBS_`` variable)."""
    s = get_settings()
    count = _count("--workers", workers, s.workers)
    max_jobs = _count("--max-jobs-per-child", max_jobs_per_child, s.max_jobs_per_child)
    max_mib = _count("--max-memory-per-child", max_memory_per_child, s.max_memory_per_child_mib)
    settings_cls = _import(settings)
    if fleet_child:
        recycler = Recycler(max_jobs, max_mib)
        create_worker(settings_cls, burst=burst, recycle=recycler).run()
        return RECYCLE_EXIT_CODE if recycler.reason else 0
    if count is None:
        if max_jobs is not None or max_mib is not None:
            raise SettingsInvalid(
                "--max-jobs-per-child and --max-memory-per-child (JOBS_MAX_JOBS_PER_CHILD, "
                "JOBS_MAX_MEMORY_PER_CHILD_MIB) recycle the workers of a fleet: add --workers N (JOBS_WORKERS)"
            )
        create_worker(settings_cls, burst=burst).run()
        return 0
    logs.setup(getattr(settings_cls, "log_level", "INFO"))
    redis_settings = worker_kwargs(settings_cls).get("redis_settings")
    if redis_settings is not None:
        check_redis(redis_settings)  # one line now, rather than every worker crash-looping on it
    command = [sys.executable, "-m", "src.cli", "worker", "--fleet-child", "--settings", settings]
    command += ["--burst"] * burst
    command += ["--max-jobs-per-child", str(max_jobs)] if max_jobs is not None else []
    command += ["--max-memory-per-child", str(max_mib)] if max_mib is not None else []
    fleet_metrics = None
    if (config := s.metrics_config()) is not None:
        from src.runner.metrics_fleet import start_fleet_metrics  # prometheus-client only when metrics are on

        # one endpoint for the host, counts added up over the workers (their environment names the directory)
        fleet_metrics = start_fleet_metrics(config, s.redis_settings(), s.queue_name)
    on_exit = None if fleet_metrics is None else fleet_metrics.child_exited
    try:
        return Fleet(command, count, burst=burst, on_exit=on_exit).run()
    finally:
        if fleet_metrics is not None:
            fleet_metrics.close()


def _count(option: str, given: str | None, setting: int | None) -> int | None:
    """A whole number of at least 1 from the command line, else the setting's value."""
    if given is None:
        return setting
    try:
        value = int(given)
    except ValueError:
        value = 0
    if value < 1:
        raise SettingsInvalid(f"{option}: expected a whole number of at least 1 (got {given!r})")
    return value


def _import(path: str) -> Any:
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # as arq's command does: settings of the project the command runs in
    try:
        return import_string(path)
    except ImportError as e:
        raise SettingsInvalid(f"--settings: cannot import {path!r} ({e})") from None
