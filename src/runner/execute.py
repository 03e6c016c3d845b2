"""Running one claimed job to an :class:`Outcome`: decode, look up, validate, run, decide what is written.

:class:`Execution` is a mixin of :class:`~src.runner.worker.Worker`, kept apart from the worker's loop. It
keeps arq's counters (``jobs_complete`` …, which arq's health check reports) and arq's outcome semantics:
success or failure is ``done`` (result stored, job removed), a retry is ``again`` (back in the queue).
Timeouts are not one timer per job: the worker's sweeper cancels tasks past their deadline (see ``worker.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from arq.connections import ArqRedis
from arq.jobs import DeserializationError, serialize_result
from arq.utils import ms_to_datetime
from arq.worker import Function, JobExecutionFailed, Retry

from . import constants as k
from .claim import Claimed
from .codec import Codec, describe_exception
from .context import JobContext
from .dlq import dead_letter
from .errors import PayloadError
from .finish import Outcome
from .job import JobSpec
from .outage import REDIS_DOWN, Outage

logger = logging.getLogger("hasten.worker")

#: how often the sweeper looks for jobs past their deadline (timeouts are enforced to this precision)
_SWEEP_EVERY_S = 0.05
#: how often running jobs are checked against arq's abort set
_ABORT_CHECK_EVERY_S = 0.05


@dataclass(slots=True)
class _Job:
    """What is known of a job once decoded; written into its result record."""

    function: str = "<unknown>"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    job_try: int = 1
    enqueue_time_ms: int = 0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _run_status(outcome: Outcome) -> str:
    if outcome.action == "again":
        return "retrying"
    if outcome.action == "back":
        return "interrupted"
    return "complete" if outcome.succeeded else "failed" if outcome.dead else "aborted"


class Execution:
    # set by Worker.__init__ (ours or arq's)
    specs: dict[str, JobSpec[Any, Any]]
    functions: dict[str, Any]
    codec: Codec
    queue_name: str
    ctx: dict[Any, Any]
    job_timeout_s: float
    keep_result_s: float
    keep_result_forever: bool
    max_tries: int
    jobs_complete: int
    jobs_failed: int
    jobs_retried: int
    pool: ArqRedis
    #: job id -> (monotonic deadline, task): the sweeper cancels what runs past its deadline
    deadlines: dict[str, tuple[float, asyncio.Task[Any]]]
    #: why a task was cancelled ("timeout" or "abort"); no reason means shutdown
    cancel_reasons: dict[str, str]

    def shared_http(self) -> Any:  # the worker's pooled HTTP client (Worker.shared_http)
        raise NotImplementedError

    async def execute(self, claimed: Claimed) -> Outcome:
        start_ms = _now_ms()
        outcome = await self._execute(claimed, start_ms)
        if claimed.job_id.startswith("cron:"):  # the entry's state notes how its runs end
            outcome.run_status = _run_status(outcome)
            outcome.run_ms = _now_ms() - start_ms
        return outcome

    async def _execute(self, claimed: Claimed, start_ms: int) -> Outcome:
        job = _Job(job_try=claimed.job_try)
        if not claimed.payload:
            logger.warning("job %s expired before it started", claimed.job_id)
            return self._done(claimed, job, start_ms, JobExecutionFailed("job expired"), dead="expired before it ran")
        try:
            data = self.codec.loads(claimed.payload, job_id=claimed.job_id, queue=self.queue_name)
            job = _Job(data["f"], tuple(data["a"]), dict(data["k"]), claimed.job_try, int(data["et"]))
        except (PayloadError, KeyError, TypeError, ValueError) as e:
            error = DeserializationError("unable to deserialize job")
            error.__cause__ = e  # the reason travels with the result (see codec.describe_exception)
            logger.warning("job %s: %s: %s", claimed.job_id, type(e).__name__, e)
            return self._done(claimed, job, start_ms, error, dead="payload refused")
        job.job_try = max(job.job_try, int(data.get("t") or 0))
        if claimed.aborted:
            return self._done(claimed, job, start_ms, asyncio.CancelledError("aborted before start"))
        function: Function | None = self.functions.get(job.function)
        if function is None:
            logger.warning("job %s: function %r not found", claimed.job_id, job.function)
            missing = JobExecutionFailed(f"function {job.function!r} not found")
            return self._done(claimed, job, start_ms, missing, dead="unknown function")
        max_tries = function.max_tries or self.max_tries
        if job.job_try > max_tries:
            exhausted = JobExecutionFailed(f"max {max_tries} retries exceeded")
            return self._done(claimed, job, start_ms, exhausted, dead="tries exhausted")
        return await self._run(claimed, job, function, start_ms)

    async def _run(self, claimed: Claimed, job: _Job, function: Function, start_ms: int) -> Outcome:
        job_id = claimed.job_id
        spec = self.specs.get(job.function)
        timeout_s = (spec.timeout_s if spec else function.timeout_s) or self.job_timeout_s or 300.0
        task = asyncio.current_task()
        assert task is not None
        self.deadlines[job_id] = (time.monotonic() + timeout_s, task)
        logger.debug("→ %s %s try=%d", job_id, job.function, job.job_try)
        try:
            if spec is not None:
                result = await spec.invoke(self._context(job_id, job, spec), job.args, job.kwargs)
            else:
                ctx = {**self.ctx, "job_id": job_id, "job_try": job.job_try, "score": claimed.score_ms,
                       "enqueue_time": ms_to_datetime(job.enqueue_time_ms)}  # fmt: skip
                result = await function.coroutine(ctx, *job.args, **job.kwargs)
        except asyncio.CancelledError:
            reason = self.cancel_reasons.pop(job_id, None)
            if reason == "abort":
                return self._done(claimed, job, start_ms, asyncio.CancelledError("aborted"))
            if reason == "timeout":
                error = spec.timeout_error(timeout_s) if spec else TimeoutError(f"timed out after {timeout_s:g}s")
                return self._failed(claimed, job, spec, start_ms, error)
            # shutdown past its grace period: back in the queue at its old place, without spending a try
            self.jobs_retried += 1
            return Outcome(claimed.raw_id, "back", b"", claimed.score_ms)
        except Retry as e:
            self.jobs_retried += 1
            return Outcome(claimed.raw_id, "again", b"", _now_ms() + (e.defer_score or 0))
        except Exception as e:
            return self._failed(claimed, job, spec, start_ms, e)
        finally:
            self.deadlines.pop(job_id, None)
        logger.debug("← %s %s", job_id, job.function)
        return self._done(claimed, job, start_ms, result, success=True)

    def _context(self, job_id: str, job: _Job, spec: JobSpec[Any, Any]) -> JobContext:
        return JobContext(
            job_id=job_id,
            job_try=job.job_try,
            max_tries=spec.retry.max_tries,
            enqueue_time=ms_to_datetime(job.enqueue_time_ms),
            function=job.function,
            _redis=self.ctx.get("redis"),
            _shared_http=self.shared_http,
        )

    def _failed(
        self, claimed: Claimed, job: _Job, spec: JobSpec[Any, Any] | None, start_ms: int, error: BaseException
    ) -> Outcome:
        if spec is not None and spec.retry.retries(error, job.job_try):
            self.jobs_retried += 1
            delay_ms = int(spec.retry.delay_s(job.job_try) * 1000)
            logger.info(
                "job %s %s: try %d failed (%s: %s), retrying in %.2fs",
                claimed.job_id, job.function, job.job_try, type(error).__name__, error, delay_ms / 1000,
            )  # fmt: skip
            record = {"try": job.job_try, "at_ms": _now_ms(), **describe_exception(error)}
            return Outcome(claimed.raw_id, "again", orjson.dumps(record), _now_ms() + delay_ms)
        logger.warning("job %s %s failed: %s: %s", claimed.job_id, job.function, type(error).__name__, error)
        retryable = spec is None or spec.retry.retries(error, 0)
        return self._done(claimed, job, start_ms, error, dead="tries exhausted" if retryable else "permanent failure")

    def _done(
        self, claimed: Claimed, job: _Job, start_ms: int, result: Any, *, success: bool = False, dead: str = ""
    ) -> Outcome:
        """A final outcome; ``result`` is the exception unless ``success``; ``dead``: why it goes to the DLQ."""
        if success:
            self.jobs_complete += 1
        else:
            self.jobs_failed += 1
        keep_ms = self._keep_result_ms(self.functions.get(job.function))
        data = b""
        if keep_ms != 0:
            data = serialize_result(
                job.function, job.args, job.kwargs, job.job_try, job.enqueue_time_ms, success, result, start_ms,
                _now_ms(), f"{claimed.job_id}:{job.function}", self.queue_name, claimed.job_id,
                serializer=self.codec.dumps,
            ) or b""  # fmt: skip
        record = b"" if not dead else dead_letter(claimed, job, self.queue_name, start_ms, result, dead)
        return Outcome(claimed.raw_id, "done", data, keep_ms, record, succeeded=success)

    def _keep_result_ms(self, function: Function | None) -> int:
        """How long to keep a result (ms): the function's setting, else the worker's; -1 is forever."""
        forever = self.keep_result_forever
        keep_s = self.keep_result_s
        if function is not None:
            forever = forever if function.keep_result_forever is None else function.keep_result_forever
            keep_s = keep_s if function.keep_result_s is None else function.keep_result_s
        return -1 if forever else int(keep_s * 1000)

    # the two periodic duties over running jobs ------------------------------------------------------------
    async def sweep_deadlines(self) -> None:
        """Cancel jobs past their timeout: one periodic task instead of a timer per job."""
        while True:
            await asyncio.sleep(_SWEEP_EVERY_S)
            now = time.monotonic()
            for job_id, (deadline, task) in list(self.deadlines.items()):
                if now >= deadline and job_id not in self.cancel_reasons:
                    self.cancel_reasons[job_id] = "timeout"
                    task.cancel()

    async def watch_aborts(self) -> None:
        """Cancel running jobs listed in arq's abort set (``Job.abort()``); only while jobs run."""
        outage = Outage("watching aborts")
        while True:
            await asyncio.sleep(_ABORT_CHECK_EVERY_S)
            if not self.deadlines:
                continue
            try:
                members = await self.pool.zrange(k.abort_jobs_ss, 0, -1)
                hits = [job_id for job_id in (m.decode(errors="backslashreplace") for m in members)
                        if job_id in self.deadlines]  # fmt: skip
                for job_id in hits:
                    self.cancel_reasons[job_id] = "abort"
                    self.deadlines[job_id][1].cancel()
                if hits:
                    await self.pool.zrem(k.abort_jobs_ss, *hits)
            except REDIS_DOWN as e:
                await outage.failed(e)
            else:
                outage.ok()
