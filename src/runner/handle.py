"""What a caller holds after an enqueue: :class:`JobHandle`, typed by the job's result, and :class:`JobInfo`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from arq.jobs import JobResult, JobStatus

from .errors import JobAborted, JobFailed
from .job import JobSpec

if TYPE_CHECKING:
    from .client import JobClient

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A snapshot of one job: where it is, and its outcome once it has one."""

    job_id: str
    status: JobStatus
    function: str | None
    kwargs: dict[str, Any]
    job_try: int | None
    enqueue_time: datetime | None
    start_time: datetime | None = None
    finish_time: datetime | None = None
    success: bool | None = None
    result: Any = None
    error: str | None = None
    #: errors of the tries that failed and were retried: ``{"try", "type", "message", "at_ms"}`` each
    try_errors: tuple[dict[str, Any], ...] = ()
    #: the last ``ctx.progress(...)`` report: ``{"fraction", "meta", "at_ms"}``
    progress: dict[str, Any] | None = None

    @classmethod
    def from_result(cls, job_id: str, status: JobStatus, outcome: JobResult) -> JobInfo:
        failed = not outcome.success
        return cls(
            job_id, status, outcome.function, outcome.kwargs, outcome.job_try, outcome.enqueue_time,
            outcome.start_time, outcome.finish_time, outcome.success,
            result=None if failed else outcome.result, error=str(outcome.result) if failed else None,
        )  # fmt: skip


class JobHandle(Generic[R]):
    """A reference to one enqueued job, typed by the job's result."""

    __slots__ = ("client", "enqueued", "job_id", "queue_name", "spec")

    def __init__(
        self, client: JobClient, spec: JobSpec[Any, R], job_id: str, *, enqueued: bool = True,
        queue_name: str | None = None,
    ) -> None:  # fmt: skip
        self.client = client
        self.spec = spec
        self.job_id = job_id
        #: the queue the job was enqueued in (status and abort look there)
        self.queue_name = queue_name or client.queue_name
        #: False when a job or result with this id already existed, so nothing new was written
        self.enqueued = enqueued

    def __repr__(self) -> str:
        return f"<JobHandle {self.spec.name} {self.job_id}>"

    async def status(self) -> JobStatus:
        return await self.client.status(self.job_id, self.queue_name)

    async def info(self) -> JobInfo:
        return await self.client.info(self.job_id, self.queue_name)

    async def abort(self, timeout_s: float = 5.0) -> bool:
        """Cancel the job, queued or running; True once it ended as aborted (it is not retried)."""
        return await self.client.abort(self.job_id, timeout_s, self.queue_name)

    async def result(self, timeout_s: float | None = None) -> R:
        """Wait for the job's result; raises :class:`JobFailed` if it failed, :class:`JobAborted` if it was
        aborted, :class:`ResultNotReady` on timeout."""
        outcome = await self.client.wait_result(self.job_id, timeout_s, self.queue_name)
        if outcome.success:
            return self.spec.decode_result(outcome.result)
        if isinstance(outcome.result, asyncio.CancelledError):
            # arq's wire form of an abort; raised as such it would pass for the caller's own cancellation
            raise JobAborted(f"job {self.job_id} was aborted") from None
        if isinstance(outcome.result, BaseException):
            raise outcome.result
        raise JobFailed("UnknownError", repr(outcome.result))
