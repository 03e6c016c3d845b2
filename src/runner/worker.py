"""Our ``Worker``: arq's worker class, wired to our own hot path.

It subclasses ``arq.worker.Worker`` for arq's settings, signal registration, health-check key and CLI, and
replaces the queue loop (``main``) and the signal handling. ``__init__`` and ``main`` are wiring: the jobs
running in this process belong to one :class:`~src.runner.running.RunningJobs`, which each part is given —

- the pickup loop (``pickup.py``): an idle worker blocks on its queue's wake-up list (``wakeup.py``) instead of
  polling every 0.5 s, and one Lua call claims a batch of due jobs (``claim.py``);
- the executor (``execute.py``): each job is one task; its outcome goes to the group-committing finisher
  (``finish.py``);
- the deadline sweeper (``deadlines.py``), the abort watcher (``aborts.py``), the lease keeper (``lease.py``)
  and the graceful drain (``shutdown.py``).

Keys and semantics stay arq's, so stock arq workers and clients can share the queue.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import arq.worker
from arq.connections import log_redis_info
from arq.jobs import Deserializer, Serializer
from arq.typing import StartupShutdown
from pydantic import SecretStr

from . import constants as k
from .aborts import watch_aborts
from .arq_options import arq_setup, with_arq_signature
from .claim import Claimer
from .claim_ids import claim_ids
from .client import JobClient
from .cluster_pool import describe_cluster, is_cluster_client
from .codec import Codec
from .context import CTX_DEFAULT_TIMEOUT_S, new_http_client
from .cron import CronEntry
from .deadlines import sweep_deadlines
from .execute import Executor
from .failures import FailureHook, hooks_of
from .finish import Finisher, Outcome
from .health import keep_recording
from .heap import freeze_startup_heap
from .job import JobSpec
from .keyspace import abort_key, tagged_id
from .layout import check_layout
from .lean_pool import make_lean
from .lease import LeaseKeeper
from .limits import declare_limits
from .loop_watch import DEFAULT_LOOP_LAG_WARN_S, LoopWatch
from .metrics_config import MetricsConfig
from .offload import DEFAULT_JOB_PROCESSES, DEFAULT_SYNC_THREADS, Offload
from .outage import RedisHealth
from .pickup import Pickup, PickupLimits
from .policy import CounterAttribute, Counters, ResultPolicy
from .pools import create_pool
from .recycle import Recycler
from .running import RunningJobs, TasksView
from .scheduler import CronScheduler
from .shutdown import GracefulDrain, within_bound
from .sockets import bound, retire_connections
from .wakeup import WakeUp
from .worker_registry import Heartbeat, WorkerState

if TYPE_CHECKING:
    import httpx2

    from .monitoring import Monitoring
    from .outbox import OutboxRelay

logger = logging.getLogger("hasten.worker")

#: connect/read timeout of the shared HTTP client; a job's own timeout_s still bounds the whole job
_HTTP_TIMEOUT_S = 30.0


class Worker(arq.worker.Worker):
    """arq's worker with typed jobs and a push-based hot path.

    Takes arq's keyword arguments (see ``arq_options.py``) plus ``cron_entries``, ``codec``, ``max_payload_bytes``,
    ``max_result_bytes`` and ``on_job_failed`` (``failures.py``). ``poll_delay`` is only the fallback for producers
    that push no wake-up token (plain arq clients).
    """

    def __init__(
        self,
        functions: Sequence[JobSpec[Any, Any] | arq.worker.Function | str | Callable[..., Any]] = (),
        *,
        cron_entries: Sequence[CronEntry] = (),
        codec: Codec | None = None,
        max_payload_bytes: int = k.DEFAULT_MAX_PAYLOAD_BYTES,
        max_result_bytes: int = k.DEFAULT_MAX_RESULT_BYTES,
        lease_s: float = k.DEFAULT_LEASE_S,
        shutdown_grace_s: float = k.DEFAULT_SHUTDOWN_GRACE_S,
        dlq_retention_s: float = k.DEFAULT_DLQ_RETENTION_S,
        job_serializer: Serializer | None = None,
        job_deserializer: Deserializer | None = None,
        allow_abort_jobs: bool = True,
        loop_lag_warn_s: float = DEFAULT_LOOP_LAG_WARN_S,
        recycle: Recycler | None = None,
        on_job_failed: FailureHook | Sequence[FailureHook] | None = None,
        metrics: MetricsConfig | None = None,
        sync_threads: int = DEFAULT_SYNC_THREADS,
        job_processes: int = DEFAULT_JOB_PROCESSES,
        outbox_url: str | SecretStr | None = None,
        **arq_kwargs: Any,
    ) -> None:
        setup = arq_setup(functions, cron_entries, codec, job_serializer, job_deserializer, arq_kwargs)
        if lease_s < 0.3:
            raise ValueError("lease_s must be at least 0.3 s (it is renewed every lease/3)")
        self.specs = {f.name: f for f in functions if isinstance(f, JobSpec)}
        self.codec = setup.codec
        self._hooks = replace(setup.hooks, on_job_failed=hooks_of(on_job_failed))
        #: our entries, and arq's cron_jobs as entries (arq_cron.py): each tick runs once across workers
        self.cron_entries = setup.cron_entries
        self.max_payload_bytes = max_payload_bytes
        self.max_result_bytes = max_result_bytes
        self.lease_ms = int(lease_s * 1000)
        self.shutdown_grace_s = shutdown_grace_s
        self.dlq_retention_ms = int(dlq_retention_s * 1000)
        #: the one owner of the jobs running in this process
        self.running = RunningJobs()
        #: the event loop's lag (``lag_s``, ``max_lag_s``), and a WARNING naming the jobs that blocked it
        self.loop_watch = LoopWatch(self.running, loop_lag_warn_s)
        #: under a fleet supervisor: the limits after which this worker drains and exits to be replaced
        self.recycle = recycle
        self.health = RedisHealth(on_timeout=self._retire_connections)
        #: the worker's own pools for sync jobs (threads) and ``@job(process=True)`` (processes)
        self.offload = Offload(sync_threads, job_processes)
        #: the database whose outbox this worker relays to Redis (``outbox.py``)
        self.outbox_url = outbox_url.get_secret_value() if isinstance(outbox_url, SecretStr) else outbox_url
        self._outbox: OutboxRelay | None = None
        self._counters = Counters()
        self.http: httpx2.AsyncClient | None = None
        # our defaults where they differ from arq's (arq: 10 jobs, 0.5 s poll)
        arq_kwargs.setdefault("max_jobs", k.DEFAULT_MAX_JOBS)
        arq_kwargs.setdefault("poll_delay", k.DEFAULT_POLL_DELAY_S)
        self._user_startup: StartupShutdown | None = arq_kwargs.pop("on_startup", None)
        self._user_shutdown: StartupShutdown | None = arq_kwargs.pop("on_shutdown", None)
        self._background: list[asyncio.Task[None]] = []
        self._finisher: Finisher | None = None
        self._heartbeat: Heartbeat | None = None
        self._wake: WakeUp | None = None
        self._claimer: Claimer | None = None
        self._pickup: Pickup | None = None
        self._owns_process = False  # run(): the startup heap is frozen (heap.py)
        self._drain = GracefulDrain(
            running=self.running, pickup=lambda: self._pickup, grace_s=shutdown_grace_s,
            stop_handoffs=self.stop_handoffs, stop_now=self._stop_now,
        )  # fmt: skip
        super().__init__(
            setup.functions,
            job_serializer=self.codec.dumps,
            job_deserializer=self.codec.loads,
            allow_abort_jobs=allow_abort_jobs,
            on_startup=self._startup,
            on_shutdown=self._shutdown,
            **arq_kwargs,
        )
        self.ctx[CTX_DEFAULT_TIMEOUT_S] = self.job_timeout_s
        # carries the queue's hash tag, as the keys named by it must (hand-off list, heartbeat: keyspace.py)
        self.worker_id = tagged_id(self.queue_name, uuid4().hex)
        #: arq's abort set, or the queue's own on a cluster: known once the layout is checked (``_startup``)
        self._abort_set = k.abort_jobs_ss
        #: metrics and health probes (``monitoring.py``), imported only when asked for: worker memory
        self.monitoring: Monitoring | None = None
        if metrics is not None:
            from .monitoring import Monitoring

            self.monitoring = Monitoring(metrics, self.queue_name, self.functions)

    # arq's attributes, kept for arq's health line and for code written against arq's Worker -----------------
    tasks = TasksView()
    jobs_complete = CounterAttribute()
    jobs_failed = CounterAttribute()
    jobs_retried = CounterAttribute()

    def _retire_connections(self) -> None:
        if self._pool is not None:
            retire_connections(self._pool)

    def shared_http(self) -> httpx2.AsyncClient:
        """One pooled HTTP client for all jobs of this worker, made when a job first uses ``ctx.http``."""
        if self.http is None:
            self.http = new_http_client(_HTTP_TIMEOUT_S)
        return self.http

    # lifecycle ------------------------------------------------------------------------------------------
    def run(self) -> None:
        """The blocking entry (``arq`` and ``hasten worker``): the worker owns its process, so what startup built
        is frozen out of full collections (``heap.py``) — not when it is awaited inside someone else's process."""
        self._owns_process = True
        super().run()

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
        bound(self.pool)
        if is_cluster_client(self.pool):  # arq's INFO pipeline asks one node; a cluster has several
            logger.info("redis cluster: %s", describe_cluster(self.pool, self.queue_name))
        else:
            await log_redis_info(self.pool, logger.info)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        self._pickup = self._wire()
        if self.monitoring is not None:
            await self.monitoring.start(self.pool, self.health, lambda: self._pickup)
        if self._owns_process:
            freeze_startup_heap()
        await self._pickup.run()

    def _wire(self) -> Pickup:
        """The parts that act on running jobs, each given the registry; the background duties started."""
        pool, running, health = self.pool, self.running, self.health
        aborts = self._abort_set
        self._finisher = Finisher(
            pool, self.queue_name, self.worker_id, self.dlq_retention_ms, health, aborts, lease_ms=self.lease_ms
        )
        self._wake = WakeUp(pool, self.queue_name, self.worker_id)
        self._heartbeat = Heartbeat(
            pool, self.worker_id, self.queue_name, self.max_jobs,
            WorkerState(self.running.job_ids, self._counters.as_tuple, self.loop_watch.take_window_max),
        )  # fmt: skip
        leases = LeaseKeeper(pool, running, self.worker_id, self.lease_ms, health)
        self._background += [
            asyncio.create_task(sweep_deadlines(running), name="hasten-deadlines"),
            asyncio.create_task(keep_recording(self.record_health, health), name="hasten-health"),
            asyncio.create_task(
                keep_recording(self._heartbeat.beat, health, "writing the heartbeat"), name="hasten-heartbeat"
            ),
            asyncio.create_task(leases.run(), name="hasten-leases"),
            asyncio.create_task(self.loop_watch.run(), name="hasten-loop-watch"),
        ]
        if self.monitoring is not None:
            watch = self.loop_watch
            self.monitoring.metrics.read_loop_lag_from(lambda: watch.lag_s)
        if self.allow_abort_jobs:
            self._background.append(
                asyncio.create_task(watch_aborts(pool, running, health, aborts), name="hasten-aborts")
            )
        if self.recycle is not None:
            recycling = self.recycle.watch(running, self._drain.recycle)
            self._background.append(asyncio.create_task(recycling, name="hasten-recycle"))
        self.executor = Executor(
            functions=self.functions, specs=self.specs, codec=self.codec, queue_name=self.queue_name, ctx=self.ctx,
            policy=ResultPolicy.of(self), running=self.running, shared_http=self.shared_http, counters=self._counters,
            finisher=self._finisher, hooks=self._hooks, offload=self.offload,
            metrics=None if self.monitoring is None else self.monitoring.metrics,
        )  # fmt: skip
        self._claimer = Claimer(
            pool, self.queue_name, self.worker_id, self.lease_ms,
            # registered as idle a little longer than one fallback poll, which renews it
            idle_ttl_ms=int(self.poll_delay_s * 1000) + 1000, abort_set=aborts,
        )  # fmt: skip
        return Pickup(
            redis=pool, queue_name=self.queue_name, running=running, claimer=self._claimer, wake=self._wake,
            leases=leases, finisher=self._finisher, execute=self.executor.execute, health=health,
            limits=PickupLimits(self.max_jobs, self.poll_delay_s, self.burst, self.max_burst_jobs),
        )  # fmt: skip

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's API to run named jobs now: claimed as ours (``claim_ids.py``) and started in the registry, like any
        job this worker takes. Needs the running worker (``main()`` wires the parts that run jobs)."""
        if self._pickup is None:
            raise RuntimeError("start_jobs() needs the worker running: call it once main() has started")
        owner, lease_ms = self.worker_id, self.lease_ms
        for claimed in await claim_ids(self.pool, self.queue_name, job_ids, owner, lease_ms, self._abort_set):
            self._pickup.start(claimed)

    async def _startup(self, ctx: dict[Any, Any]) -> None:
        cluster = await check_layout(self.pool, self.queue_name)  # before any key is written
        self._abort_set = abort_key(self.queue_name, cluster)
        declared = {name: spec.limits.default for name, spec in self.specs.items() if spec.limits is not None}
        await declare_limits(self.pool, self.queue_name, declared)
        loop = type(asyncio.get_running_loop())
        logger.info(
            "hasten worker on %s.%s: %d jobs, %d cron entries, queue %r, codec %s",
            loop.__module__, loop.__qualname__, len(self.functions), len(self.cron_entries), self.queue_name,
            "JSON+HMAC" if self.codec.signs else "JSON" if type(self.codec) is Codec else "job_serializer",
        )  # fmt: skip
        client = JobClient(
            self.pool, self.codec, queue_name=self.queue_name, max_payload_bytes=self.max_payload_bytes,
            enqueue_counter=None if self.monitoring is None else self.monitoring.enqueue_counter,
        )  # fmt: skip
        if self.cron_entries:
            scheduler = CronScheduler(self.cron_entries, client)
            self._background.append(asyncio.create_task(scheduler.run(), name="hasten-cron"))
        if self.outbox_url:
            from .outbox import OutboxRelay

            self._outbox = OutboxRelay.for_url(self.outbox_url, client)
            self._background.append(asyncio.create_task(self._outbox.run(), name="hasten-outbox"))
        if self._user_startup:
            await self._user_startup(ctx)

    async def _shutdown(self, ctx: dict[Any, Any]) -> None:
        if self._user_shutdown:
            await self._user_shutdown(ctx)
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    # stopping -------------------------------------------------------------------------------------------
    def handle_sig(self, signum: int) -> None:
        """SIGTERM/SIGINT: the graceful drain (``shutdown.py``); arq registers this handler."""
        self._drain.on_signal(signal.Signals(signum))

    def _stop_now(self, sig: signal.Signals) -> None:
        """Cancel what runs (it goes back to the queue, its try unspent) and end the main task."""
        cancelled = self.running.cancel_all("shutdown")
        if sig is not signal.SIGUSR1:
            logger.info(
                "stopping on %s: %d complete, %d failed, %d retried, %d cancelled (back to the queue)",
                sig.name, self.jobs_complete, self.jobs_failed, self.jobs_retried, cancelled,
            )  # fmt: skip
        if self.main_task is not None:
            self.main_task.cancel()
        if self.on_stop is not None:
            self.on_stop(sig)

    async def outcomes_written(self) -> None:
        """Wait until every outcome of a job that ended so far is written (for tests and tools)."""
        if self._finisher is not None:
            await self._finisher.drain()

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
        await within_bound(
            self.stop_handoffs(),
            "could not leave the idle set; jobs handed over meanwhile run after their hand-off lease",
        )
        await asyncio.gather(*self.running.tasks(), return_exceptions=True)
        if self._finisher is not None:
            await self._finisher.close()
        if self.monitoring is not None:
            await self.monitoring.close()
        if self._wake is not None:
            await self._wake.close()
        await within_bound(self.pool.delete(self.health_check_key))  # else it expires on its own
        if self._heartbeat is not None:
            await within_bound(self._heartbeat.remove())  # else it expires within a few heartbeats
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        self.offload.close()
        if self._outbox is not None:
            await self._outbox.close()
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None

    # background duties ----------------------------------------------------------------------------------
    async def record_health(self) -> None:
        """arq's health-check key (read by ``arq --check``), absent while Redis refuses a duty's commands."""
        if self.health.refusing:
            await self.pool.delete(self.health_check_key)
            self._last_health_check = 0
            return
        await super().record_health()

    def __repr__(self) -> str:
        return (
            f"<Worker {self.worker_id} j_complete={self.jobs_complete} j_failed={self.jobs_failed} "
            f"j_retried={self.jobs_retried} j_ongoing={len(self.running)}>"
        )


with_arq_signature(Worker)
