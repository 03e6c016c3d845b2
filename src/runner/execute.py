"""Running one claimed job to an :class:`Outcome`: decode, look up, validate, run, decide what is written.

:class:`Executor` is given the worker's registry of running jobs (``running.py``): it sets a job's deadline when
its function starts, and reads why the worker cancelled it, if the worker did. It keeps arq's counters
(``jobs_complete`` …, which arq's health check reports) and arq's outcome semantics: success or failure is
``done`` (result stored, job removed), a retry is ``again`` (back in the queue). How a ``CancelledError`` ends a
try is decided from the worker's own state, never from the exception type: a timeout is a failed try, an abort
ends the job, a shutdown puts it back without spending a try, and a ``CancelledError`` the job raised itself
(a library that turns its own timeout into one, a cancelled future) is a failed try like any exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from arq.jobs import DeserializationError, serialize_result
from arq.utils import ms_to_datetime, truncate
from arq.worker import Function, JobExecutionFailed, Retry, RetryJob

from . import constants as k
from . import current_job, failures, tracing, workflow_steps
from .claim import Claimed
from .codec import Codec, describe_exception
from .context import STATE_KEY, JobContext
from .dlq import dead_letter
from .errors import JobCancelled, PayloadError, PayloadTooLarge
from .finish import Finisher, Outcome
from .hooks import JobHooks
from .job import JobSpec
from .keyspace import without_tag
from .offload import Offload
from .policy import Counters, ResultPolicy
from .redact import mask_arguments, redacted_paths
from .running import RunningJobs
from .workflow_ids import WORKFLOW_INPUT_KEY, step_of

if TYPE_CHECKING:
    from .metrics import JobMetrics, Meter

logger = logging.getLogger("hasten.worker")


@dataclass(slots=True)
class _Job:
    """What is known of a job once decoded; written into its result record."""

    function: str = "<unknown>"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    job_try: int = 1
    enqueue_time_ms: int = 0
    #: argument paths never shown (``@job(redact=...)``): masked in the result record and the dead-letter record
    redact: tuple[str, ...] = ()
    #: metrics (when on): the function's meter once the try counts as started, and when (perf_counter)
    meter: Meter | None = None
    started_s: float = 0.0
    #: when its function was called (perf_counter), 0.0 if it never was: the try's duration is recorded
    called_s: float = 0.0
    #: a workflow step after others: where its input comes from (``workflow_steps.with_input``)
    workflow_input: dict[str, Any] | None = None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _run_status(outcome: Outcome) -> str:
    if outcome.action == "again":
        return "retrying"
    if outcome.action == "back":
        return "interrupted"
    return "complete" if outcome.succeeded else "failed" if outcome.dead else "aborted"


class Executor:
    def __init__(
        self,
        *,
        functions: dict[str, Any],
        specs: dict[str, JobSpec[Any, Any]],
        codec: Codec,
        queue_name: str,
        ctx: dict[Any, Any],
        policy: ResultPolicy,
        running: RunningJobs,
        shared_http: Callable[[], Any],
        counters: Counters,
        finisher: Finisher,
        hooks: JobHooks,
        offload: Offload,
        metrics: JobMetrics | None = None,
    ) -> None:
        self.functions = functions
        self.specs = specs
        self.codec = codec
        self.queue_name = queue_name
        self.ctx = ctx
        self.policy = policy
        self.running = running
        self.shared_http = shared_http
        self.counters = counters
        self.finisher = finisher
        self.hooks = hooks
        #: the worker's pools for sync and process jobs (``offload.py``)
        self.offload = offload
        self.metrics = metrics
        #: arq's per-job hooks are set: each try builds arq's ctx dict for them (the hooks are frozen)
        self._arq_hooks = bool(hooks)
        #: per function name: its timeout (s) and how long its result is kept (ms), worked out once
        self._timeouts_s: dict[str, float] = {}
        self._keep_ms: dict[str, int] = {}

    async def execute(self, claimed: Claimed) -> None:
        """Run one claimed job and hand its outcome to the finisher (then ``after_job_end``, once written)."""
        start_ms = _now_ms()
        job = _Job(job_try=claimed.job_try)
        outcome, ctx = await self._execute(claimed, start_ms, job)
        if self.metrics is not None:  # a try refused before its function ran starts and ends here
            meter = job.meter or self.metrics.started(job.function, claimed.score_ms)
            meter.finished(outcome, time.perf_counter() - job.started_s if job.started_s else 0.0)
        if job.called_s and outcome.action != "back":  # per-minute durations (durations.py); a shutdown's cut is not
            outcome.function, outcome.duration_s = job.function, time.perf_counter() - job.called_s
        if outcome.action == "done" and not outcome.succeeded and step_of(claimed.job_id) is not None:
            outcome.workflow = workflow_steps.failure_note(outcome)  # fails its workflow (finish.lua)
        # a cron run (its entry's state notes how its runs end); the bytes test spares most jobs the string work
        if b"cron:" in claimed.raw_id and without_tag(claimed.job_id).startswith("cron:"):
            outcome.run_status = _run_status(outcome)
            outcome.run_ms = _now_ms() - start_ms
        # sent from this task before it first waits: the bytes leave in the step the function returned in
        self.running.finishing(claimed.job_id)
        await self.finisher.write(outcome)
        if outcome.failure is not None:  # on_job_failed hooks, error trackers (failures.py)
            await failures.report(outcome.failure, self.hooks.on_job_failed)
        if ctx is not None and self.hooks.after_job_end is not None:
            await self.finisher.drain()
            await self.hooks.written(ctx)

    async def _execute(self, claimed: Claimed, start_ms: int, job: _Job) -> tuple[Outcome, dict[Any, Any] | None]:
        """The outcome, and arq's job ctx if the job's function was called (the hooks' ctx); ``job`` is filled in
        as the payload is read."""
        if not claimed.payload:
            logger.warning("job %s expired before it started", claimed.job_id)
            expired = JobExecutionFailed("job expired")
            return self._done(claimed, job, start_ms, expired, dead="expired before it ran"), None
        if len(claimed.payload) > self.policy.max_payload_bytes:
            too_large = PayloadTooLarge(
                f"job is {len(claimed.payload)} bytes, over the limit of {self.policy.max_payload_bytes} "
                "(max_payload_bytes); enqueue a reference to the data instead of the data"
            )
            logger.warning("job %s: %s", claimed.job_id, too_large)
            return self._done(claimed, job, start_ms, too_large, dead="payload too large"), None
        try:
            data = self.codec.loads(claimed.payload, job_id=claimed.job_id, queue=self.queue_name)
            decoded = data["f"], tuple(data["a"]), dict(data["k"]), int(data["et"])  # all or nothing
            job.function, job.args, job.kwargs, job.enqueue_time_ms = decoded
        except (PayloadError, KeyError, TypeError, ValueError) as e:
            error = DeserializationError("unable to deserialize job")
            error.__cause__ = e  # the reason travels with the result (see codec.describe_exception)
            logger.warning("job %s: %s: %s", claimed.job_id, type(e).__name__, e)
            return self._done(claimed, job, start_ms, error, dead="payload refused"), None
        job.job_try = max(job.job_try, int(data.get("t") or 0))
        job.workflow_input = data.get(WORKFLOW_INPUT_KEY)
        job.redact = redacted_paths(job.function, data)
        current_job.bind(claimed.job_id, job.function, job.job_try, self.queue_name)  # every line it logs names it
        if tracing.active is not None:  # a CONSUMER span around the try (tracing.py)
            trace_context = data.get(tracing.TRACE_CONTEXT_KEY)
            started = self._start(claimed, job, start_ms)
            return await tracing.active.consume(
                started, claimed.job_id, job.function, job.job_try, self.queue_name, trace_context
            )
        return await self._start(claimed, job, start_ms)

    async def _start(self, claimed: Claimed, job: _Job, start_ms: int) -> tuple[Outcome, dict[Any, Any] | None]:
        """The rest of :meth:`_execute` once the job is decoded: run it, unless it cannot or need not run."""
        if claimed.aborted and self.policy.allow_abort_jobs:
            return self._done(claimed, job, start_ms, asyncio.CancelledError("aborted before start")), None
        function: Function | None = self.functions.get(job.function)
        if function is None:
            logger.warning("job %s: function %r not found", claimed.job_id, job.function)
            missing = JobExecutionFailed(f"function {job.function!r} not found")
            return self._done(claimed, job, start_ms, missing, dead="unknown function"), None
        max_tries = function.max_tries or self.policy.max_tries
        if job.job_try > max_tries:
            exhausted = JobExecutionFailed(f"max {max_tries} retries exceeded")
            return self._done(claimed, job, start_ms, exhausted, dead="tries exhausted"), None
        if self.metrics is not None:
            job.meter = self.metrics.started(job.function, claimed.score_ms)
            job.started_s = time.perf_counter()
        if not self._arq_hooks and job.function in self.specs:  # a @job without hooks needs no arq ctx (hot path)
            return await self._run(claimed, job, function, {}, start_ms), None
        ctx = {**self.ctx, "job_id": claimed.job_id, "job_try": job.job_try, "score": claimed.score_ms,
               "enqueue_time": ms_to_datetime(job.enqueue_time_ms)}  # fmt: skip
        await self.hooks.started(ctx)
        outcome = await self._run(claimed, job, function, ctx, start_ms)
        await self.hooks.ended(ctx)
        return outcome, ctx

    def _timeout_s(self, spec: JobSpec[Any, Any] | None, function: Function) -> float:
        for timeout_s in (spec.timeout_s if spec else function.timeout_s, self.policy.job_timeout_s):
            if timeout_s is not None and timeout_s > 0:
                return timeout_s
        return k.DEFAULT_JOB_TIMEOUT_S

    async def _run(
        self, claimed: Claimed, job: _Job, function: Function, ctx: dict[Any, Any], start_ms: int
    ) -> Outcome:
        job_id = claimed.job_id
        spec = self.specs.get(job.function)
        timeout_s = self._timeouts_s.get(job.function) or self._timeouts_s.setdefault(
            job.function, self._timeout_s(spec, function)
        )
        self.running.set_deadline(job_id, time.monotonic() + timeout_s, job.function)
        logger.debug("→ %s %s try=%d", job_id, job.function, job.job_try)
        job.called_s = time.perf_counter()
        try:
            if job.workflow_input is not None:  # the results of the steps before it (a failed read fails the try)
                job.kwargs = await workflow_steps.with_input(
                    self.ctx["redis"], self.codec, self.queue_name, job_id, job.workflow_input, job.kwargs
                )
            if spec is not None:
                result = await spec.invoke(self._context(job_id, job, spec), job.args, job.kwargs, self.offload)
            else:
                result = await function.coroutine(ctx, *job.args, **job.kwargs)
        except (Retry, RetryJob) as e:
            if self.running.cancel_reason(job_id) is not None:
                return self._cancelled(claimed, job, spec, start_ms, timeout_s, e)
            if not self.policy.retry_jobs:  # arq's retry_jobs=False: asking for a retry fails the job
                return self._failed_for_good(claimed, job, spec, start_ms, e)
            self.counters.retried += 1
            defer_ms = e.defer_score if isinstance(e, Retry) else None
            return Outcome(claimed.raw_id, "again", b"", _now_ms() + (defer_ms or 0))
        except (Exception, asyncio.CancelledError) as e:
            return self._cancelled(claimed, job, spec, start_ms, timeout_s, e)
        if self.running.cancel_reason(job_id) is not None:  # cancelled, and the job swallowed it
            return self._cancelled(claimed, job, spec, start_ms, timeout_s, None)
        if logger.isEnabledFor(logging.DEBUG):
            shown = f" ● {truncate(repr(result))}" if self.policy.log_results and result is not None else ""
            logger.debug("← %s %s%s", job_id, job.function, shown)
        return self._done(claimed, job, start_ms, result, success=True)

    def _cancelled(
        self, claimed: Claimed, job: _Job, spec: JobSpec[Any, Any] | None, start_ms: int, timeout_s: float,
        error: BaseException | None,
    ) -> Outcome:  # fmt: skip
        """How a try that raised ``error`` ends, given why (if at all) the worker cancelled it."""
        reason = self.running.cancel_reason(claimed.job_id)
        if reason == "abort":
            return self._done(claimed, job, start_ms, asyncio.CancelledError("aborted"))
        if reason == "timeout":
            timed_out = spec.timeout_error(timeout_s) if spec else TimeoutError(f"timed out after {timeout_s:g}s")
            return self._failed(claimed, job, spec, start_ms, timed_out)
        task = asyncio.current_task()
        if reason is None and isinstance(error, asyncio.CancelledError) and task is not None and task.cancelling():
            reason = "shutdown"  # cancelled from outside the worker (the event loop closing): not the job's doing
        if reason == "shutdown":
            # shutdown past its grace period: back in the queue at its old place, without spending a try
            self.counters.retried += 1
            return Outcome(claimed.raw_id, "back", b"", claimed.score_ms)
        assert error is not None
        if isinstance(error, asyncio.CancelledError):
            # stored as is, arq's wire would read it as an abort
            error = JobCancelled(f"the job raised CancelledError itself: {error}".rstrip(": "))
            if not self.policy.retry_jobs:
                return self._failed_for_good(claimed, job, spec, start_ms, error)
            if spec is None:  # a plain arq function: run again, as arq's retry_jobs does (a @job follows its policy)
                self.counters.retried += 1
                return Outcome(claimed.raw_id, "again", b"", _now_ms())
        return self._failed(claimed, job, spec, start_ms, error)

    def _context(self, job_id: str, job: _Job, spec: JobSpec[Any, Any]) -> JobContext:
        return JobContext(
            job_id=job_id,
            job_try=job.job_try,
            max_tries=spec.retry.max_tries,
            enqueue_time=ms_to_datetime(job.enqueue_time_ms),
            function=job.function,
            _redis=self.ctx.get("redis"),
            _shared_http=self.shared_http,
            _state=self.ctx.get(STATE_KEY),
        )

    def _failed(
        self, claimed: Claimed, job: _Job, spec: JobSpec[Any, Any] | None, start_ms: int, error: BaseException
    ) -> Outcome:
        if spec is not None and spec.retry.retries(error, job.job_try):
            self.counters.retried += 1
            delay_ms = int(spec.retry.delay_s(job.job_try) * 1000)
            logger.info(
                "job %s %s: try %d failed (%s: %s), retrying in %.2fs",
                claimed.job_id, job.function, job.job_try, type(error).__name__, error, delay_ms / 1000,
            )  # fmt: skip
            record = {"try": job.job_try, "at_ms": _now_ms(), **describe_exception(error)}
            failure = self._failure(claimed, job, error, retry_in_s=delay_ms / 1000)
            return Outcome(claimed.raw_id, "again", orjson.dumps(record), _now_ms() + delay_ms, failure=failure)
        return self._failed_for_good(claimed, job, spec, start_ms, error)

    def _failed_for_good(
        self, claimed: Claimed, job: _Job, spec: JobSpec[Any, Any] | None, start_ms: int, error: BaseException,
        reason: str = "",
    ) -> Outcome:  # fmt: skip
        """A final failure, logged at ERROR (what error trackers collect) with the job in ``extra``."""
        logger.error(
            "job %s %s failed: %s: %s", claimed.job_id, job.function, type(error).__name__, error,
            exc_info=(type(error), error, error.__traceback__),
            extra={"job_id": claimed.job_id, "function": job.function, "job_try": job.job_try,
                   "queue": self.queue_name, "outcome": "dead"},
        )  # fmt: skip
        retryable = spec is None or spec.retry.retries(error, 0)
        reason = reason or ("tries exhausted" if retryable else "permanent failure")
        return self._done(claimed, job, start_ms, error, dead=reason)

    def _done(
        self, claimed: Claimed, job: _Job, start_ms: int, result: Any, *, success: bool = False, dead: str = ""
    ) -> Outcome:
        """A final outcome; ``result`` is the exception unless ``success``; ``dead``: why it goes to the DLQ."""
        keep_ms = self._keep_ms.get(job.function)
        if keep_ms is None:
            function = self.functions.get(job.function)
            keep_ms = self._keep_result_ms(function)
            if function is not None:  # cached for known names only: a payload's name is anyone's string
                self._keep_ms[job.function] = keep_ms
        data = b""
        if keep_ms != 0:
            data = serialize_result(
                job.function, job.args, mask_arguments(job.kwargs, job.redact), job.job_try, job.enqueue_time_ms,
                success, result, start_ms,
                _now_ms(), f"{claimed.job_id}:{job.function}", self.queue_name, claimed.job_id,
                serializer=self.codec.dumps,
            ) or b""  # fmt: skip
            if success and len(data) > self.policy.max_result_bytes:
                return self._too_large(claimed, job, start_ms, len(data))
        step_result = b""
        if success and step_of(claimed.job_id) is not None:
            # what its workflow's state keeps (read by the next steps), kept or not as a job result: held to the
            # same limit
            try:
                step_result = workflow_steps.encode_result(self.codec, claimed.job_id, self.queue_name, result)
            except PayloadError as e:
                return self._failed_for_good(claimed, job, None, start_ms, e, "result refused")
            if len(step_result) > self.policy.max_result_bytes:
                return self._too_large(claimed, job, start_ms, len(step_result))
        if success:
            self.counters.complete += 1
        else:
            self.counters.failed += 1
        if not dead:
            return Outcome(claimed.raw_id, "done", data, keep_ms, succeeded=success, workflow=step_result)
        record = dead_letter(claimed, job, self.queue_name, start_ms, result, dead)
        return Outcome(claimed.raw_id, "done", data, keep_ms, record, failure=self._failure(claimed, job, result, dead))

    def _too_large(self, claimed: Claimed, job: _Job, start_ms: int, size: int) -> Outcome:
        too_large = PayloadTooLarge(
            f"result of {job.function}() is {size} bytes, over the limit of {self.policy.max_result_bytes} "
            "(max_result_bytes); store it elsewhere and return a reference"
        )
        return self._failed_for_good(claimed, job, None, start_ms, too_large, "result too large")

    def _failure(
        self, claimed: Claimed, job: _Job, error: BaseException, dead: str = "", retry_in_s: float | None = None
    ) -> failures.JobFailure:
        return failures.JobFailure(
            claimed.job_id, job.function, job.job_try, self.queue_name, error, bool(dead), dead, retry_in_s
        )

    def _keep_result_ms(self, function: Function | None) -> int:
        """How long to keep a result (ms): the function's setting, else the worker's; -1 is forever."""
        forever = self.policy.keep_result_forever
        keep_s = self.policy.keep_result_s
        if function is not None:
            forever = forever if function.keep_result_forever is None else function.keep_result_forever
            keep_s = keep_s if function.keep_result_s is None else function.keep_result_s
        return -1 if forever else int(keep_s * 1000)
