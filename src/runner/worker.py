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
import contextlib
import logging
import signal
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import arq.worker
from arq.connections import create_pool, log_redis_info
from arq.typing import StartupShutdown

from . import constants as k
from .claim import Claimed, Claimer
from .client import JobClient
from .codec import Codec
from .context import CTX_DEFAULT_TIMEOUT_S, new_http_client
from .cron import CronEntry, check_table
from .execute import Execution
from .finish import Finisher, Outcome
from .job import JobSpec
from .lease import renew_leases
from .outage import REDIS_DOWN, Outage
from .packing import use_hiredis_packing
from .scheduler import CronScheduler
from .shutdown import GracefulShutdown
from .wakeup import WakeUp

if TYPE_CHECKING:
    import httpx2

logger = logging.getLogger("jobs.worker")

#: connect/read timeout of the shared HTTP client; a job's own timeout_s still bounds the whole job
_HTTP_TIMEOUT_S = 30.0
#: how long the pickup loop waits for more slots when only a few are free
_GATHER_SLOTS_S = 0.001
#: an idle wait shorter than this is not worth a blocking call
_MIN_WAIT_S = 0.0005


class Worker(GracefulShutdown, Execution, arq.worker.Worker):
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
        use_hiredis_packing(self.pool)
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

    # the hot path ---------------------------------------------------------------------------------------
    async def _pickup(self, claimer: Claimer) -> None:
        """Claim while there are free slots and due jobs; otherwise wait for a job, a free slot or a due time."""
        outage = Outage("taking jobs")
        while True:
            try:
                if await self._pickup_step(claimer):
                    return
            except REDIS_DOWN as e:
                claimer.reset()
                await outage.failed(e)
            else:
                outage.ok()

    async def _pickup_step(self, claimer: Claimer) -> bool:
        """One turn of the pickup loop; True when a burst run is done."""
        free = self.max_jobs - len(self.tasks)
        if self._burst_limit_reached() or not self.allow_pick_jobs or free <= 0:
            if self.burst and not self.tasks and self._burst_limit_reached():
                return True
            await self._wait_for_slot(None)
            return False
        if free < self._claim_min and self.tasks:
            # few slots free while jobs run: let a few more finish so one claim starts many (less Redis CPU)
            await asyncio.sleep(_GATHER_SLOTS_S)
            free = self.max_jobs - len(self.tasks)
        batch = await claimer.claim(free if self.max_burst_jobs < 0 else min(free, self._burst_left()))
        for claimed in batch.jobs:
            self._start(claimed)
        if batch.more:
            return False
        if self.burst and not self.tasks and not batch.jobs and not await self.pool.zcard(self.queue_name):
            return True
        await self._idle(claimer, batch.next_due_ms)
        return False

    async def _idle(self, claimer: Claimer, next_due_ms: int | None) -> None:
        """Nothing due: wait for a handed-over job or a token, at most until the next deferred job is due."""
        assert self._wake is not None
        wait_s = self.poll_delay_s
        due_in_s = None if next_due_ms is None else (next_due_ms - time.time() * 1000) / 1000
        if due_in_s is not None:
            wait_s = min(wait_s, due_in_s)
        if wait_s < _MIN_WAIT_S:
            return
        claimer.reset()
        if self.burst and self.tasks:
            await self._wait_for_slot(wait_s)
            return
        handed = await self._wake.wait(wait_s, precise=wait_s == due_in_s)
        if handed is not None:
            self._start(handed)

    def _start(self, claimed: Claimed) -> None:
        job_id = claimed.job_id
        task = asyncio.create_task(self._run_job(claimed))
        self.tasks[job_id] = task
        self._raw_ids[job_id] = claimed.raw_id
        self._started_count += 1
        task.add_done_callback(lambda _: self._job_done(job_id))

    async def _run_job(self, claimed: Claimed) -> None:
        assert self._finisher is not None
        try:
            outcome = await self.execute(claimed)
        except Exception:
            # a bug of ours, not the job's: leave the job to be claimed again when its in-progress key expires
            logger.exception("job %s: internal error; it will run again", claimed.job_id)
            return
        self._finisher.add(outcome)

    def _job_done(self, job_id: str) -> None:
        self.tasks.pop(job_id, None)
        self._raw_ids.pop(job_id, None)
        self._slot_free.set()

    async def _wait_for_slot(self, timeout_s: float | None) -> None:
        self._slot_free.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot_free.wait(), timeout_s)

    def _running_ids(self) -> Iterable[bytes]:
        return self._raw_ids.values()

    def _burst_left(self) -> int:
        return self.max_burst_jobs - self._started_count

    def _burst_limit_reached(self) -> bool:
        return self.burst and 0 <= self.max_burst_jobs <= self._started_count

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
