"""Our ``Worker``: arq's worker running :class:`JobSpec` jobs with our codec, typed context and cron table.

It is a subclass of ``arq.worker.Worker`` so that arq's queue semantics, health check, abort and signal
handling hold unchanged; what it adds is set up around arq's startup and shutdown hooks: a shared HTTP client
for jobs, the default timeout our jobs read, and the cron scheduler (:mod:`.scheduler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import Sequence
from typing import Any

import arq.worker
import httpx2
from arq.typing import StartupShutdown

from . import constants as k
from .client import JobClient
from .codec import Codec
from .context import CTX_DEFAULT_TIMEOUT_S, CTX_HTTP
from .cron import CronEntry, check_table
from .job import JobSpec
from .scheduler import CronScheduler

logger = logging.getLogger("jobs.worker")

#: connect/read timeout of the shared HTTP client; a job's own timeout_s still bounds the whole job
_HTTP_TIMEOUT_S = 30.0


class Worker(arq.worker.Worker):
    """arq's worker with typed jobs. Takes arq's keyword arguments plus ``cron_entries`` and ``codec``."""

    def __init__(
        self,
        functions: Sequence[JobSpec[Any, Any] | arq.worker.Function] = (),
        *,
        cron_entries: Sequence[CronEntry] = (),
        codec: Codec | None = None,
        max_payload_bytes: int = k.DEFAULT_MAX_PAYLOAD_BYTES,
        **arq_kwargs: Any,
    ) -> None:
        arq_functions = [f.arq_function() if isinstance(f, JobSpec) else f for f in functions]
        names = [f.name for f in arq_functions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"job names must be unique, registered twice: {', '.join(duplicates)}")
        check_table(list(cron_entries), set(names))
        self.codec = codec or Codec()
        self.cron_entries = list(cron_entries)
        self.max_payload_bytes = max_payload_bytes
        self._user_startup: StartupShutdown | None = arq_kwargs.pop("on_startup", None)
        self._user_shutdown: StartupShutdown | None = arq_kwargs.pop("on_shutdown", None)
        self._cron_task: asyncio.Task[None] | None = None
        super().__init__(
            arq_functions,
            job_serializer=self.codec.dumps,
            job_deserializer=self.codec.loads,
            on_startup=self._startup,
            on_shutdown=self._shutdown,
            **arq_kwargs,
        )
        self.ctx[CTX_DEFAULT_TIMEOUT_S] = self.job_timeout_s

    async def _startup(self, ctx: dict[Any, Any]) -> None:
        loop = type(asyncio.get_running_loop())
        logger.info(
            "jobs worker on %s.%s: %d jobs, %d cron entries, queue %r, codec %s",
            loop.__module__, loop.__qualname__, len(self.functions), len(self.cron_entries), self.queue_name,
            "JSON+HMAC" if self.codec.signs else "JSON",
        )  # fmt: skip
        ctx[CTX_HTTP] = httpx2.AsyncClient(timeout=_HTTP_TIMEOUT_S)
        if self.cron_entries:
            client = JobClient(
                self.pool, self.codec, queue_name=self.queue_name, max_payload_bytes=self.max_payload_bytes
            )
            self._cron_task = asyncio.create_task(CronScheduler(self.cron_entries, client).run(), name="jobs-cron")
        if self._user_startup:
            await self._user_startup(ctx)

    async def _shutdown(self, ctx: dict[Any, Any]) -> None:
        if self._cron_task is not None:
            self._cron_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cron_task
        if self._user_shutdown:
            await self._user_shutdown(ctx)
        http: httpx2.AsyncClient | None = ctx.pop(CTX_HTTP, None)
        if http is not None:
            await http.aclose()

    async def close(self) -> None:
        """arq's ``close``, with redis-py 5's ``aclose`` (arq calls the deprecated ``close``)."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if self._pool is None:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None


def worker_kwargs(settings_cls: Any) -> dict[str, Any]:
    """The attributes of a settings class (or dict) that :class:`Worker` or arq's worker accept."""
    accepted = set(inspect.signature(Worker).parameters) | set(inspect.signature(arq.worker.Worker).parameters)
    source = settings_cls if isinstance(settings_cls, dict) else vars(settings_cls)
    return {key: value for key, value in source.items() if key in accepted}
