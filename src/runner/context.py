"""The typed context every job receives as its first argument (instead of arq's bare dict)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx2
from arq.connections import ArqRedis

logger = logging.getLogger("jobs.job")

#: keys our worker adds to arq's ctx dict; a stock arq worker leaves them out and the defaults apply
CTX_HTTP = "jobs_http"
CTX_DEFAULT_TIMEOUT_S = "jobs_default_timeout_s"


@dataclass(slots=True)
class JobContext:
    """What a running job knows about itself and what it may use.

    ``redis`` is the worker's connection pool; ``http`` a pooled async HTTP client shared by the worker's
    jobs (created on first use when the worker provides none, and closed after the job).
    """

    job_id: str
    job_try: int
    max_tries: int
    enqueue_time: datetime
    function: str
    logger: logging.LoggerAdapter[logging.Logger]
    _redis: ArqRedis | None = None
    _http: httpx2.AsyncClient | None = None
    _owns_http: bool = field(default=False)

    @classmethod
    def from_arq(cls, ctx: dict[Any, Any], function: str, max_tries: int) -> JobContext:
        job_id = str(ctx.get("job_id", ""))
        return cls(
            job_id=job_id,
            job_try=int(ctx.get("job_try") or 1),
            max_tries=max_tries,
            enqueue_time=ctx["enqueue_time"],
            function=function,
            logger=logging.LoggerAdapter(logger, {"job_id": job_id, "function": function}),
            _redis=ctx.get("redis"),
            _http=ctx.get(CTX_HTTP),
        )

    @property
    def redis(self) -> ArqRedis:
        if self._redis is None:
            raise RuntimeError("this job runs without Redis (eager mode without redis=); ctx.redis is unavailable")
        return self._redis

    @property
    def http(self) -> httpx2.AsyncClient:
        if self._http is None:
            self._http = httpx2.AsyncClient()
            self._owns_http = True
        return self._http

    async def aclose(self) -> None:
        """Close what this context opened for itself."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None
            self._owns_http = False
