"""The typed context every job receives as its first argument (instead of arq's bare dict)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from arq.connections import ArqRedis

from .constants import JOB_NOTES_TTL_MS, PROGRESS_KEY_PREFIX
from .redact import RedactingFilter
from .retry import Permanent

if TYPE_CHECKING:
    # imported on first use only: a worker whose jobs make no HTTP calls does not load an HTTP stack
    import httpx2

logger = logging.getLogger("hasten.job")

#: key our worker adds to arq's ctx dict; a stock arq worker leaves it out and the default applies
CTX_DEFAULT_TIMEOUT_S = "jobs_default_timeout_s"
#: the key of arq's ctx dict where ``on_startup`` puts what jobs share (a database pool, a client …)
STATE_KEY = "state"

S = TypeVar("S")


def new_http_client(timeout_s: float = 30.0) -> httpx2.AsyncClient:
    import httpx2

    # httpx logs every request's full URL at INFO, user info and query included (webhook URLs carry secrets)
    http_logger = logging.getLogger("httpx2")
    if not any(isinstance(f, RedactingFilter) for f in http_logger.filters):
        http_logger.addFilter(RedactingFilter())
    return httpx2.AsyncClient(timeout=timeout_s)


@dataclass(slots=True)
class JobContext:
    """What a running job knows about itself and what it may use.

    ``redis`` is the worker's connection pool; ``http`` a pooled async HTTP client shared by the worker's
    jobs (made on first use; outside our worker, one per job, closed after it); ``logger`` carries the
    job id and function.
    """

    job_id: str
    job_try: int
    max_tries: int
    enqueue_time: datetime
    function: str
    _redis: ArqRedis | None = None
    #: the worker's shared client, made on first use
    _shared_http: Callable[[], httpx2.AsyncClient] | None = None
    _http: httpx2.AsyncClient | None = field(default=None)
    _owns_http: bool = False
    _logger: logging.LoggerAdapter[logging.Logger] | None = None
    #: what the worker's ``on_startup`` put in ``ctx["state"]``
    _state: Any = None

    @classmethod
    def from_arq(cls, ctx: dict[Any, Any], function: str, max_tries: int) -> JobContext:
        return cls(
            job_id=str(ctx.get("job_id", "")),
            job_try=int(ctx.get("job_try") or 1),
            max_tries=max_tries,
            enqueue_time=ctx["enqueue_time"],
            function=function,
            _redis=ctx.get("redis"),
            _state=ctx.get(STATE_KEY),
        )

    def state(self, kind: type[S]) -> S:
        """What the worker's ``on_startup`` put in ``ctx["state"]`` (a database pool, a client …), typed: it must
        be a ``kind``. See ``examples/shared_state.py``. Without it the job fails for good (:class:`Permanent`):
        no retry can fix a worker's set-up."""
        if self._state is None:
            raise Permanent(f'no worker state: put a {kind.__name__} in ctx["state"] in the worker\'s on_startup')
        if not isinstance(self._state, kind):
            raise Permanent(f'ctx["state"] is a {type(self._state).__name__}, not a {kind.__name__}')
        return self._state

    @property
    def redis(self) -> ArqRedis:
        if self._redis is None:
            raise RuntimeError("this job runs without Redis (eager mode without redis=); ctx.redis is unavailable")
        return self._redis

    @property
    def http(self) -> httpx2.AsyncClient:
        if self._http is None:
            if self._shared_http is not None:
                self._http = self._shared_http()
            else:
                self._http = new_http_client()
                self._owns_http = True
        return self._http

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        if self._logger is None:
            self._logger = logging.LoggerAdapter(logger, {"job_id": self.job_id, "function": self.function})
        return self._logger

    async def progress(self, fraction: float, meta: dict[str, Any] | None = None) -> None:
        """Report how far the job is (0.0 to 1.0) with optional JSON details; shown by ``handle.info()``."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress is a fraction from 0 to 1, not {fraction}")
        if self._redis is None:
            return  # eager mode without Redis: nowhere to show it
        report = {"fraction": fraction, "meta": meta or {}, "at_ms": int(time.time() * 1000)}
        await self._redis.set(PROGRESS_KEY_PREFIX + self.job_id, orjson.dumps(report), px=JOB_NOTES_TTL_MS)

    async def aclose(self) -> None:
        """Close what this context opened for itself."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None
            self._owns_http = False
