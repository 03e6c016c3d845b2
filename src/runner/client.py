"""``JobClient``: typed enqueue in one round trip, and the reads behind ``JobHandle`` (status, result, abort)."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from uuid import uuid4

import orjson
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job, JobResult, JobStatus, deserialize_result, serialize_result
from redis.exceptions import RedisError

from . import constants as k
from . import tracing
from .canvas import Flow
from .cluster_pool import is_cluster_client
from .codec import Codec
from .cron import CronEntry
from .errors import JobNotFound, KeyLayoutError, PayloadTooLarge, ResultNotReady
from .handle import JobHandle, JobInfo
from .job import EnqueueOptions, JobCall, JobSpec
from .keyspace import abort_key, hash_tag, tagged_id
from .layout import is_cluster, untagged_on_cluster
from .lean_pool import make_lean
from .pools import create_pool
from .preflight import check_redis_async
from .redact import REDACT_KEY, mask_arguments, redacted_paths
from .result_waiters import ResultWaiters, wait_turn
from .scripts import script
from .workflow import OnFailure, WorkflowHandle, enqueue_workflow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from .metrics import EnqueueCounter

logger = logging.getLogger("hasten.client")

P = ParamSpec("P")
R = TypeVar("R")

#: jobs per enqueue script call in enqueue_many (bounds how long one call holds Redis)
_ENQUEUE_CHUNK = 1000
#: the cron part of the enqueue script's arguments for a plain job (see scripts/enqueue.lua)
_NOT_CRON = [0, 0, 0, 0]
#: result polling starts fast (most jobs finish in milliseconds) and backs off to this ceiling
_RESULT_POLL_MAX_S = 0.05


class TickResult(IntEnum):
    """What enqueueing a cron tick did (the enqueue script's answer)."""

    TAKEN = 0  # another worker enqueued this tick
    ENQUEUED = 1
    OVERLAP_SKIPPED = 2  # the entry skips overlapping runs and its previous run is unfinished


def _ms_of(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One job ready for ``enqueue.lua``."""

    job_id: str
    queue: str
    payload: bytes
    score_ms: int
    ttl_ms: int
    #: the side entry of a job of a limited function (``limits.py``), '' for none
    limit: str = ""


class JobClient:
    """Enqueues typed jobs. Arguments are validated before anything is written to Redis.

    Open with :meth:`connect` (and ``close()``), or ``async with await JobClient.connect(...)``.
    """

    #: a cluster client: every queue must be tagged (its keys share one slot); False for clients without Redis
    _on_cluster = False

    def __init__(
        self,
        redis: ArqRedis,
        codec: Codec,
        *,
        queue_name: str = k.default_queue_name,
        max_payload_bytes: int = k.DEFAULT_MAX_PAYLOAD_BYTES,
        enqueue_counter: EnqueueCounter | None = None,
        result_wakeups: bool = True,
    ) -> None:
        self.redis = redis
        self.codec = codec
        self.queue_name = queue_name
        self.max_payload_bytes = max_payload_bytes
        #: counts the jobs written (``hasten_jobs_enqueued_total``), when given
        self.enqueue_counter = enqueue_counter
        self._enqueue = script(redis, "enqueue")
        self._abort = script(redis, "abort")
        self._snapshot = script(redis, "snapshot")
        #: whether Redis is a cluster (where each queue has its own abort set), asked at the first abort
        self._cluster: bool | None = None
        self._on_cluster = is_cluster_client(redis)
        #: ``result()`` is woken by the workers' announcements (result_waiters.py); False: it polls (a Redis proxy
        #: without pub/sub)
        self.result_wakeups = result_wakeups
        self._waiters: ResultWaiters | None = None

    @classmethod
    async def connect(
        cls,
        redis_settings: RedisSettings,
        codec: Codec,
        *,
        queue_name: str = k.default_queue_name,
        max_payload_bytes: int = k.DEFAULT_MAX_PAYLOAD_BYTES,
        enqueue_counter: EnqueueCounter | None = None,
    ) -> JobClient:
        """Connect (raising :class:`RedisUnreachable` within seconds when Redis does not answer)."""
        await check_redis_async(redis_settings)
        redis = await create_pool(
            redis_settings, job_serializer=codec.dumps, job_deserializer=codec.loads, default_queue_name=queue_name
        )
        make_lean(redis)
        return cls(
            redis, codec, queue_name=queue_name, max_payload_bytes=max_payload_bytes, enqueue_counter=enqueue_counter
        )

    async def close(self) -> None:
        if self._waiters is not None:
            await self._waiters.close()
        await self.redis.aclose(close_connection_pool=True)

    async def __aenter__(self) -> JobClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # enqueue --------------------------------------------------------------------------------------------
    async def enqueue(self, spec: JobSpec[P, R], /, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Validate the arguments, then write the job in one round trip. Options come from ``spec.options()``."""
        require_spec(spec)
        encoded = spec.encode_args(args, kwargs)
        if tracing.active is None:
            job = self._prepare(spec, encoded)
            [written] = await self._run_enqueue(job.queue, [job])
        else:  # a PRODUCER span around the write; its trace context travels in the payload (tracing.py)
            with tracing.active.sending(spec.enqueue_options.queue_name or self.queue_name, spec.name) as send:
                job = self._prepare(spec, encoded, send.carrier)
                send.message_id(job.job_id)
                [written] = await self._run_enqueue(job.queue, [job])
        if self.enqueue_counter is not None:
            self.enqueue_counter.add(job.queue, spec.name, written)
        return JobHandle(self, spec, job.job_id, enqueued=bool(written), queue_name=job.queue)

    async def enqueue_workflow(
        self, flow: Flow[R], /, *, queue_name: str | None = None, on_failure: OnFailure = "cancel",
        keep_result_s: float | None = None,
    ) -> WorkflowHandle[R]:  # fmt: skip
        """Validate every step of ``flow`` (``chain``, ``group``, ``chord`` of ``spec.s(...)`` steps), then write it
        in one round trip; the steps run in ``queue_name`` (default: the one their jobs are set for, else the
        client's). ``on_failure``: when a step fails for good, ``cancel`` the steps still queued or running, or let
        them ``continue``; ``keep_result_s``: how long the workflow's state and result are kept after its end."""
        return await enqueue_workflow(
            self, flow, queue_name=queue_name, on_failure=on_failure, keep_result_s=keep_result_s
        )

    async def enqueue_many(self, calls: Sequence[JobCall[R]]) -> list[JobHandle[R]]:
        """Enqueue validated calls (``spec.call(...)``): one Lua call per queue and thousand jobs."""
        for call in calls:
            if not isinstance(call, JobCall):
                raise TypeError(f"enqueue_many() takes calls made with spec.call(...), got {type(call).__name__}")
        if tracing.active is None or not calls:
            return await self._enqueue_many(calls)
        queues = {call.spec.enqueue_options.queue_name or self.queue_name for call in calls}
        functions = {call.spec.name for call in calls}
        queue, function = (queues.pop() if len(queues) == 1 else ""), (functions.pop() if len(functions) == 1 else "")
        with tracing.active.sending(queue, function, len(calls)) as send:  # one PRODUCER span for the batch
            return await self._enqueue_many(calls, send.carrier)

    async def _enqueue_many(
        self, calls: Sequence[JobCall[R]], trace_context: dict[str, str] | None = None
    ) -> list[JobHandle[R]]:
        prepared = [self._prepare(call.spec, call.kwargs, trace_context) for call in calls]
        written: dict[str, bool] = {}
        by_queue: dict[str, list[_Prepared]] = {}
        for job in prepared:
            by_queue.setdefault(job.queue, []).append(job)
        for queue, jobs in by_queue.items():
            for i in range(0, len(jobs), _ENQUEUE_CHUNK):
                chunk = jobs[i : i + _ENQUEUE_CHUNK]
                flags = await self._run_enqueue(queue, chunk)
                written.update((job.job_id, bool(flag)) for job, flag in zip(chunk, flags, strict=True))
        if self.enqueue_counter is not None:  # one increment per queue and function, not per job
            counts = collections.Counter((j.queue, c.spec.name) for c, j in zip(calls, prepared, strict=True)
                                         if written[j.job_id])  # fmt: skip
            for (queue, function), n in counts.items():
                self.enqueue_counter.add(queue, function, n)
        return [
            JobHandle(self, c.spec, j.job_id, enqueued=written[j.job_id], queue_name=j.queue)
            for c, j in zip(calls, prepared, strict=True)
        ]

    async def enqueue_in(
        self, session: AsyncSession, spec: JobSpec[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle[R]:
        """Validate and write the job into the outbox in ``session``'s transaction: it reaches Redis once the
        transaction commits (moved by the outbox relay), and never if it rolls back (``outbox.py``)."""
        from .outbox import write

        require_spec(spec)
        job = self._prepare(spec, spec.encode_args(args, kwargs))
        await write(session, job, spec.name)
        return JobHandle(self, spec, job.job_id, queue_name=job.queue)

    async def enqueue_after_commit(
        self, session: AsyncSession, spec: JobSpec[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle[R]:
        """Validate now, send when ``session`` commits, drop on a rollback — without a table, and so lost if this
        process dies between the commit and the send (``outbox.py``)."""
        from .outbox import send_after_commit

        require_spec(spec)
        job = self._prepare(spec, spec.encode_args(args, kwargs))
        send_after_commit(session, self, job)
        return JobHandle(self, spec, job.job_id, queue_name=job.queue)

    async def send_prepared(self, jobs: Sequence[_Prepared]) -> None:
        """Write jobs prepared earlier (the outbox's rows): one script call per queue and thousand jobs; an id
        already queued, running or with a result is not written again."""
        by_queue: dict[str, list[_Prepared]] = {}
        for job in jobs:
            by_queue.setdefault(job.queue, []).append(job)
        for queue, queued in by_queue.items():
            for i in range(0, len(queued), _ENQUEUE_CHUNK):
                await self._run_enqueue(queue, queued[i : i + _ENQUEUE_CHUNK])

    async def enqueue_tick(self, entry: CronEntry, tick: datetime | None, next_tick: datetime) -> TickResult:
        """Enqueue one cron tick (``None``: a startup run) once cluster-wide: only the caller that sets the tick
        marker writes the job, unless the entry skips overlapping runs and its previous run is unfinished."""
        if tick is None:
            now = datetime.now(UTC)
            job_id, marker, marker_ttl_ms = (
                entry.startup_job_id(now),
                entry.startup_marker_key,
                k.CRON_STARTUP_WINDOW_MS,
            )
        else:
            job_id, marker, marker_ttl_ms = entry.job_id(tick), entry.marker_key(tick), entry.marker_ttl_ms
        job = self._prepare(entry.job.options(job_id=job_id, defer_until=tick), entry.kwargs)
        cron = [marker_ttl_ms, int(entry.overlap == "skip"), _ms_of(tick) if tick else 0, _ms_of(next_tick)]
        [result] = await self._run_enqueue(job.queue, [job], cron, [marker, entry.state_key])
        if self.enqueue_counter is not None:
            self.enqueue_counter.add(job.queue, entry.job.name, result == TickResult.ENQUEUED)
        return TickResult(result)

    async def _run_enqueue(
        self, queue: str, jobs: list[_Prepared], cron: list[int] = _NOT_CRON, cron_keys: Sequence[str] = ()
    ) -> list[int]:
        keys = [queue, k.WAKE_KEY_PREFIX + queue, k.IDLE_KEY_PREFIX + queue, k.REWIND_KEY_PREFIX + queue]
        args: list[bytes | str | int] = [k.MAX_WAKE_TOKENS, int(time.time() * 1000), *cron]
        for job in jobs:
            keys += [k.job_key_prefix + job.job_id, k.result_key_prefix + job.job_id]
            args += [job.job_id, job.payload, job.score_ms, job.ttl_ms, job.limit]
        keys += cron_keys
        written: list[int] = await self._enqueue(keys=keys, args=args)
        return written

    def _prepare(
        self, spec: JobSpec[Any, Any], encoded_kwargs: dict[str, Any], trace_context: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None, options: EnqueueOptions | None = None,
    ) -> _Prepared:  # fmt: skip
        """Payload, id and due time of one job, for already validated arguments (and the enqueue's trace context,
        when tracing: inside the job dict, so the signature covers it and stock arq ignores it; ``extra``: more
        keys of the job dict, such as a workflow step's input; ``options``: instead of the spec's, without the cost
        of a copy of the spec, which builds its models again)."""
        opts: EnqueueOptions = options or spec.enqueue_options
        now_ms = int(time.time() * 1000)
        score_ms = now_ms
        if opts.defer_until is not None:
            score_ms = int(opts.defer_until.timestamp() * 1000)
        elif opts.defer_by is not None:
            score_ms = now_ms + _ms(opts.defer_by)
        ttl_ms = _ms(opts.expires) if opts.expires is not None else max(score_ms - now_ms, 0) + k.EXPIRES_EXTRA_MS
        if opts.priority:
            if score_ms > now_ms:
                # a head start on a later due time would start the job early
                raise ValueError(
                    f"job {spec.name!r}: priority={opts.priority} is a head start for a job due now; a job deferred to "
                    "a later time runs at that time (enqueue it with priority=0)"
                )
            score_ms -= opts.priority * k.PRIORITY_STEP_MS
        queue = opts.queue_name or self.queue_name
        if self._on_cluster and not hash_tag(queue):
            raise KeyLayoutError(untagged_on_cluster(queue))
        # a tagged queue's job ids begin with its tag, so that the job's keys share the queue's slot (keyspace.py)
        job_id = tagged_id(queue, opts.job_id or uuid4().hex)
        data: dict[str, Any] = {"t": None, "f": spec.name, "a": [], "k": encoded_kwargs, "et": now_ms}
        if trace_context:
            data[tracing.TRACE_CONTEXT_KEY] = trace_context
        if extra:
            data.update(extra)
        if spec.redact:  # readers that never imported the job still know what to hide
            data[REDACT_KEY] = list(spec.redact)
        payload = self.codec.dumps_job(data, job_id, queue)  # signed for this id and queue
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"job {spec.name!r} encodes to {len(payload)} bytes, over the limit of {self.max_payload_bytes} "
                "(setting max_payload_bytes); pass a reference to the data instead of the data"
            )
        return _Prepared(job_id, queue, payload, score_ms, ttl_ms, spec.limit_entry(encoded_kwargs))

    def handle(self, spec: JobSpec[Any, R], job_id: str, queue_name: str | None = None) -> JobHandle[R]:
        """A handle for a job enqueued elsewhere (by id), in ``queue_name`` (default: the spec's queue, else the
        client's)."""
        queue = queue_name or spec.enqueue_options.queue_name or self.queue_name
        return JobHandle(self, spec, job_id, queue_name=queue)

    def _arq_job(self, job_id: str, queue_name: str | None) -> Job:
        queue = queue_name or self.queue_name
        return Job(job_id, self.redis, _queue_name=queue, _deserializer=self.codec.loads)

    async def status(self, job_id: str, queue_name: str | None = None) -> JobStatus:
        """Where the job is; ``queue_name``: the queue it was enqueued in (default: the client's). arq's
        ``Job.status()`` reads the same keys in a MULTI, which a cluster does not take: one script reads them."""
        result, _, in_progress, score = await self._read_snapshot(job_id, queue_name or self.queue_name)
        if result is not None:
            return JobStatus.complete
        if in_progress:
            return JobStatus.in_progress
        if score is not None:
            return JobStatus.deferred if float(score) > time.time() * 1000 else JobStatus.queued
        return JobStatus.not_found

    async def _read_snapshot(self, job_id: str, queue: str) -> tuple[bytes | None, bool, bool, bytes | None]:
        """Result, whether the job exists, whether it runs, its score: one read (``scripts/snapshot.lua``)."""
        keys = [
            k.result_key_prefix + job_id, k.job_key_prefix + job_id, k.in_progress_key_prefix + job_id, queue,
        ]  # fmt: skip
        raw, pending, in_progress, score = await self._snapshot(keys=keys, args=[job_id])
        return raw, bool(pending), bool(in_progress), score

    async def wait_result(self, job_id: str, timeout_s: float | None, queue_name: str | None = None) -> JobResult:
        """The stored outcome, once there. The wait is woken by the worker's announcement that the job ended, and
        reads the result again at least every second (``result_waiters.py``); without wake-ups (``result_wakeups``
        off, or the subscription failed) it polls with a short, growing delay."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        queue = queue_name or self.queue_name
        waiters = await self._result_waiters(queue)
        delay_s = 0.001
        while True:
            expected = None if waiters is None else waiters.expect(job_id)
            try:
                # one atomic snapshot: a job finishing between two reads would look "not found"
                raw, pending, _, _ = await self._read_snapshot(job_id, queue)
                if raw is not None:
                    return deserialize_result(raw, deserializer=self.codec.loads)
                if not pending:
                    raise JobNotFound(f"job {job_id} not found (never enqueued, expired, or its result was not kept)")
                remaining_s = None if deadline is None else deadline - time.monotonic()
                if remaining_s is not None and remaining_s <= 0:
                    raise ResultNotReady(f"job {job_id} has no result after {timeout_s}s")
                delay_s = await wait_turn(waiters, expected, remaining_s, delay_s, _RESULT_POLL_MAX_S)
            finally:
                if waiters is not None and expected is not None:
                    waiters.forget(job_id, expected)

    async def _result_waiters(self, queue: str) -> ResultWaiters | None:
        """This client's waiters, subscribed to ``queue``; None (poll) when wake-ups are off or cannot be had."""
        if not self.result_wakeups:
            return None
        if self._waiters is None:
            self._waiters = ResultWaiters(self.redis)
        try:
            await self._waiters.watch(queue)
        except (RedisError, OSError) as e:
            logger.debug("waiting for results by polling: %s: %s", type(e).__name__, e)
            return None
        return self._waiters

    async def abort(self, job_id: str, timeout_s: float = 5.0, queue_name: str | None = None) -> bool:
        """Abort a queued job at once, or ask its worker to cancel it if it runs; wait for the outcome.
        ``queue_name``: the queue it was enqueued in (default: the client's)."""
        queue = queue_name or self.queue_name
        raw = await self.redis.get(k.job_key_prefix + job_id)
        now_ms = int(time.time() * 1000)
        definition = self.codec.loads(raw) if raw else {}
        function = definition.get("f", "<unknown>")
        kwargs = mask_arguments(definition.get("k", {}), redacted_paths(function, definition))
        record = serialize_result(
            function, tuple(definition.get("a", ())), kwargs,
            int(definition.get("t") or 0), int(definition.get("et", now_ms)), False,
            asyncio.CancelledError("aborted before it started"), now_ms, now_ms, job_id, queue, job_id,
            serializer=self.codec.dumps,
        )  # fmt: skip
        if self._cluster is None:
            self._cluster = await is_cluster(self.redis)
        keys = [
            queue, abort_key(queue, self._cluster), k.in_progress_key_prefix + job_id, k.result_key_prefix + job_id,
            k.job_key_prefix + job_id, k.retry_key_prefix + job_id, k.DONE_CHANNEL_PREFIX + queue,
        ]  # fmt: skip
        state = await self._abort(keys=keys, args=[job_id, now_ms, record or b"", int(k.DEFAULT_KEEP_RESULT_S * 1000)])
        if state == 0:
            return False
        try:
            outcome = await self.wait_result(job_id, timeout_s, queue)
        except JobNotFound:
            return bool(state == 1)  # aborted, with results not kept
        return bool(not outcome.success and isinstance(outcome.result, asyncio.CancelledError))

    async def info(self, job_id: str, queue_name: str | None = None) -> JobInfo:
        """Status, arguments (those the job redacts masked: ``@job(redact=...)``), outcome, try errors, progress."""
        job = self._arq_job(job_id, queue_name)
        status = await self.status(job_id, queue_name)
        definition = await job.info()
        if definition is None:
            info = JobInfo(job_id, status, None, {}, None, None)
        elif isinstance(definition, JobResult):
            info = JobInfo.from_result(job_id, status, definition)
        else:
            info = JobInfo(
                job_id, status, definition.function, definition.kwargs, definition.job_try, definition.enqueue_time
            )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(k.TRY_ERRORS_KEY_PREFIX + job_id, 0, -1)
            pipe.get(k.PROGRESS_KEY_PREFIX + job_id)
            pipe.get(k.job_key_prefix + job_id)
            errors, progress, payload = await pipe.execute()
        paths = redacted_paths(info.function, self._decoded(payload))
        return replace(
            info,
            kwargs=mask_arguments(info.kwargs, paths),
            try_errors=tuple(orjson.loads(e) for e in errors),
            progress=None if progress is None else orjson.loads(progress),
        )

    def _decoded(self, payload: bytes | None) -> Any:
        """The job dict of ``payload``, or None when there is none or it cannot be read."""
        try:
            return None if payload is None else self.codec.loads(payload)
        except Exception:  # an unreadable payload hides nothing more than the declared paths
            return None


def require_spec(spec: object) -> None:
    """TypeError unless ``spec`` is a ``@job`` spec: arq's habit of enqueueing by name must fail clearly."""
    if not isinstance(spec, JobSpec):
        hint = f" (import the job and pass it: enqueue({spec}, ...))" if isinstance(spec, str) else ""
        raise TypeError(f"enqueue() takes a @job spec, got {type(spec).__name__}{hint}")


def _ms(value: timedelta | float) -> int:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    return int(seconds * 1000)
