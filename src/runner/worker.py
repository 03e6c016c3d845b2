"""Our ``Worker``: arq's worker class, with our own pickup loop.

It subclasses ``arq.worker.Worker`` for arq's settings, signal handling, health check and CLI, and replaces
the queue loop (``main``) with the hot path:

- an idle worker blocks on its queue's wake-up list (``wakeup.py``) instead of polling every 0.5 s;
- one Lua call claims a batch of due jobs (``claim.py``) instead of 4 + 1 round trips per job;
- each job is one task (``execute.py``), timeouts are enforced by one sweeper instead of a timer per job;
- outcomes that complete close together are written in one Lua call (``finish.py``).

Keys and semantics stay arq's, so stock arq workers and clients can share the queue.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import arq.worker
from arq.connections import create_pool, log_redis_info
from arq.typing import StartupShutdown

from . import constants as k
from .claim import Claimer
from .client import JobClient
from .codec import Codec
from .context import CTX_DEFAULT_TIMEOUT_S, new_http_client
from .cron import CronEntry, check_table
from .execute import Execution
from .finish import Finisher, Outcome
from .job import JobSpec
from .lean_pool import make_lean
from .lease import renew_leases
from .outage import REDIS_DOWN, Outage
from .pickup import Pickup
from .scheduler import CronScheduler
from .shutdown import GracefulShutdown
from .wakeup import WakeUp

if TYPE_CHECKING:
    import httpx2

logger = logging.getLogger("hasten.worker")

#: connect/read timeout of the shared HTTP client; a job's own timeout_s still bounds the whole job
_HTTP_TIMEOUT_S = 30.0


class Worker(GracefulShutdown, Execution, Pickup, arq.worker.Worker):
    """arq's worker with typed jobs and a push-based hot path.

    Takes arq's keyword arguments plus ``cron_entries``, ``codec`` and ``max_payload_bytes``. ``poll_delay``
    is only the fallback for producers that push no wake-up token (plain arq clients).
    """

    def __init__(
        self,
        functions: Sequence[JobSpec[Any, Any] | arq.worker.Function] = (),
        *,
        cron_entries: Sequence[CronEntry] = (),
        codec: Codec | None = None,
        max_payload_bytes: int = k.DEFAULT_MAX_PAYLOAD_BYTES,
        lease_s: float = k.DEFAULT_LEASE_S,
        shutdown_grace_s: float = k.DEFAULT_SHUTDOWN_GRACE_S,
        dlq_retention_s: float = k.DEFAULT_DLQ_RETENTION_S,
        **arq_kwargs: Any,
    ) -> None:
        arq_functions = [f.arq_function() if isinstance(f, JobSpec) else f for f in functions]
        names = [f.name for f in arq_functions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"job names must be unique, registered twice: {', '.join(duplicates)}")
        check_table(list(cron_entries), set(names))
        self.specs = {f.name: f for f in functions if isinstance(f, JobSpec)}
        self.codec = codec or Codec()
        self.cron_entries = list(cron_entries)
        self.max_payload_bytes = max_payload_bytes
        if lease_s < 0.3:
            raise ValueError("lease_s must be at least 0.3 s (it is renewed every lease/3)")
        self.lease_ms = int(lease_s * 1000)
        self.shutdown_grace_s = shutdown_grace_s
        self.dlq_retention_ms = int(dlq_retention_s * 1000)
        self._drain_task = None
        #: job id -> raw id of the jobs running here, whose leases the heartbeat renews
        self._raw_ids: dict[str, bytes] = {}
        self.http: httpx2.AsyncClient | None = None
        self.deadlines = {}
        self.cancel_reasons = {}
        # our defaults where they differ from arq's (arq: 10 jobs, 0.5 s poll)
        arq_kwargs.setdefault("max_jobs", k.DEFAULT_MAX_JOBS)
        arq_kwargs.setdefault("poll_delay", k.DEFAULT_POLL_DELAY_S)
        self._user_startup: StartupShutdown | None = arq_kwargs.pop("on_startup", None)
        self._user_shutdown: StartupShutdown | None = arq_kwargs.pop("on_shutdown", None)
        self._background: list[asyncio.Task[None]] = []
        self._slot_free = asyncio.Event()
        self._finisher: Finisher | None = None
        self._wake: WakeUp | None = None
        self._claimer: Claimer | None = None
        self.worker_id = uuid4().hex
        self._started_count = 0
        super().__init__(
            arq_functions,
            job_serializer=self.codec.dumps,
            job_deserializer=self.codec.loads,
            on_startup=self._startup,
            on_shutdown=self._shutdown,
            **arq_kwargs,
        )
        self.ctx[CTX_DEFAULT_TIMEOUT_S] = self.job_timeout_s
        #: below this many free slots (with jobs running) the loop gathers slots before claiming
        self._claim_min = min(8, max(self.max_jobs // 4, 1))

    def shared_http(self) -> httpx2.AsyncClient:
        """One pooled HTTP client for all jobs of this worker, made when a job first uses ``ctx.http``."""
        if self.http is None:
            self.http = new_http_client(_HTTP_TIMEOUT_S)
        return self.http

    # lifecycle ------------------------------------------------------------------------------------------
    async def main(self) -> None:
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        make_lean(self.pool)
        await log_redis_info(self.pool, logger.info)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        self._finisher = Finisher(self.pool, self.queue_name, self.dlq_retention_ms)
        self._wake = WakeUp(self.pool, self.queue_name, self.worker_id)
        self._background += [
            asyncio.create_task(self.sweep_deadlines(), name="jobs-deadlines"),
            asyncio.create_task(self.watch_aborts(), name="jobs-aborts"),
            asyncio.create_task(self._record_health(), name="jobs-health"),
            asyncio.create_task(renew_leases(self.pool, self._running_ids, self.lease_ms), name="jobs-leases"),
        ]
        self._claimer = Claimer(
            self.pool, self.queue_name, self.worker_id, self.lease_ms,
            # registered as idle a little longer than one fallback poll, which renews it
            idle_ttl_ms=int(self.poll_delay_s * 1000) + 1000,
        )  # fmt: skip
        await self._pickup(self._claimer)

    async def _startup(self, ctx: dict[Any, Any]) -> None:
        loop = type(asyncio.get_running_loop())
        logger.info(
            "jobs worker on %s.%s: %d jobs, %d cron entries, queue %r, codec %s",
            loop.__module__, loop.__qualname__, len(self.functions), len(self.cron_entries), self.queue_name,
            "JSON+HMAC" if self.codec.signs else "JSON",
        )  # fmt: skip
        if self.cron_entries:
            client = JobClient(
                self.pool, self.codec, queue_name=self.queue_name, max_payload_bytes=self.max_payload_bytes
            )
            scheduler = CronScheduler(self.cron_entries, client)
            self._background.append(asyncio.create_task(scheduler.run(), name="jobs-cron"))
        if self._user_startup:
            await self._user_startup(ctx)

    async def _shutdown(self, ctx: dict[Any, Any]) -> None:
        if self._user_shutdown:
            await self._user_shutdown(ctx)
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    async def stop_handoffs(self) -> None:
        """Leave the idle set; jobs handed to us but not started go back to the queue, their try unspent."""
        if self._claimer is not None and self._finisher is not None:
            for claimed in await self._claimer.unregister(self.pool):
                self._finisher.add(Outcome(claimed.raw_id, "back", b"", claimed.score_ms))

    async def close(self) -> None:
        """Let cancelled jobs record their outcome, write every pending outcome, then close (arq's order)."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self._pool is None:
            return
        await self.stop_handoffs()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self._finisher is not None:
            await self._finisher.drain()
        if self._wake is not None:
            await self._wake.close()
        await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None

    # background duties ----------------------------------------------------------------------------------
    async def _record_health(self) -> None:
        """arq's health-check key (read by ``arq --check``), at arq's interval."""
        outage = Outage("recording health")
        while True:
            try:
                await self.record_health()
            except REDIS_DOWN as e:
                await outage.failed(e)
                continue
            outage.ok()
            await asyncio.sleep(min(self.health_check_interval, 60))
