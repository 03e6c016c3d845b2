"""How ``arq src.settings.WorkerSettings`` runs *our* worker, on uvloop.

arq's CLI builds ``arq.worker.Worker`` itself: ``arq.cli`` calls ``run_worker()``, which calls the module
global ``arq.worker.create_worker()``. :func:`install` points that name (and ``arq.cli``'s copy, used by
``--watch``) at :func:`create_worker`, which builds our subclass from the same settings class. It is called
from ``src/settings.py``, which arq imports before it builds the worker. ``--check`` needs nothing: it only
reads the health-check key the worker writes.

Redis is checked first (``preflight.py``): a worker that cannot reach it stops within seconds with one line
naming the URL, instead of arq's retries and a traceback.

uvloop: arq's ``Worker.__init__`` takes ``asyncio.get_event_loop()``, so the loop is created and set before
the worker is built (``uvloop.install()`` and loop policies are deprecated on 3.12+).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import logging.config
import sys
from typing import Any

import arq.constants
import arq.worker
import uvloop

from . import logs, pools, telemetry
from .errors import JobsError
from .preflight import check_redis
from .worker import Worker

logger = logging.getLogger("hasten.worker")
#: where arq's health check logs its verdict
arq_logger = logging.getLogger("arq.worker")


def create_worker(settings_cls: Any, **overrides: Any) -> Worker:
    """Our worker from a settings class, on a fresh uvloop loop unless one is already running.

    Raises :class:`RedisUnreachable` (before anything is built) when its Redis does not answer.
    """
    logs.setup(getattr(settings_cls, "log_level", "INFO"), getattr(settings_cls, "log_format", "text"))
    telemetry.setup_worker(settings_cls)  # JOBS_TRACING, JOBS_SENTRY_DSN
    redis_settings = worker_kwargs(settings_cls).get("redis_settings")
    if redis_settings is not None:
        check_redis(redis_settings)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.set_event_loop(uvloop.new_event_loop())
    return Worker(**{**worker_kwargs(settings_cls), **overrides})


def create_worker_or_exit(settings_cls: Any, **overrides: Any) -> Worker:
    """:func:`create_worker` for a command line: an error of ours is one log line and exit code 1."""
    try:
        return create_worker(settings_cls, **overrides)
    except JobsError as e:
        logger.error("%s", e)
        raise SystemExit(1) from None


_arq_check_health = arq.worker.check_health


def check_health(settings_cls: Any) -> int:
    """arq's ``--check``, logging in our format: arq's CLI configures its own format after it imported the
    settings, so without this the check's one line would read unlike every other line of ours."""
    level, log_format = getattr(settings_cls, "log_level", "INFO"), getattr(settings_cls, "log_format", "text")
    logging.config.dictConfig(logs.log_config(level, log_format=log_format))
    redis_settings = worker_kwargs(settings_cls).get("redis_settings")
    try:
        if redis_settings is not None:
            check_redis(redis_settings)  # a Redis that does not answer: one line, not arq's retries and traceback
    except JobsError as e:
        logger.error("%s", e)
        return 1
    if getattr(redis_settings, "cluster", False):  # arq's check connects to one node, which may not hold the key
        return asyncio.run(_check_cluster_health(settings_cls, redis_settings))
    return _arq_check_health(settings_cls)


async def _check_cluster_health(settings_cls: Any, redis_settings: Any) -> int:
    """arq's health check (same key, same lines) through the cluster client."""
    kwargs = worker_kwargs(settings_cls)
    queue_name = kwargs.get("queue_name") or arq.constants.default_queue_name
    key = kwargs.get("health_check_key") or queue_name + arq.constants.health_check_key_suffix
    redis = await pools.create_pool(redis_settings)
    try:
        data = await redis.get(key)
    finally:
        await redis.aclose()
    if not data:
        arq_logger.warning("Health check failed: no health check sentinel value found")
        return 1
    arq_logger.info("Health check successful: %s", data)
    return 0


def install() -> None:
    """Make arq's CLI build our worker, and log ``--check`` in our format. Idempotent."""
    arq.worker.create_worker = create_worker_or_exit
    cli = sys.modules.get("arq.cli")
    if cli is not None:
        cli.create_worker = create_worker_or_exit  # type: ignore[attr-defined]
        cli.check_health = check_health  # type: ignore[attr-defined]


def worker_kwargs(settings_cls: Any) -> dict[str, Any]:
    """The attributes of a settings class (or dict) that :class:`Worker` or arq's worker accept; a class's
    inherited attributes count too (arq reads only the class's own), so settings can share a base class."""
    accepted = set(inspect.signature(Worker).parameters) | set(inspect.signature(arq.worker.Worker).parameters)
    if isinstance(settings_cls, dict):
        return {key: value for key, value in settings_cls.items() if key in accepted}
    return {key: getattr(settings_cls, key) for key in dir(settings_cls) if key in accepted}
