"""What the executor is told and what it counts: arq's worker options that shape a job's outcome
(:class:`ResultPolicy`) and arq's counters (:class:`Counters`, shown on the worker as ``jobs_complete`` …)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import constants as k


@dataclass(slots=True)
class Counters:
    """arq's counters, which its health check line reports."""

    complete: int = 0
    failed: int = 0
    retried: int = 0

    def as_tuple(self) -> tuple[int, int, int]:
        """(complete, failed, retried)"""
        return self.complete, self.failed, self.retried


class CounterAttribute:
    """One of arq's counter attributes of the worker (``jobs_complete``, ``jobs_failed``, ``jobs_retried``), kept in
    its ``_counters``: arq's health line and code written against arq's ``Worker`` read them."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._field = name.removeprefix("jobs_")

    def __get__(self, worker: Any, owner: type | None = None) -> int:
        return int(getattr(worker._counters, self._field))

    def __set__(self, worker: Any, value: int) -> None:
        setattr(worker._counters, self._field, value)


@dataclass(slots=True)
class ResultPolicy:
    """How long results are kept and how many tries a job gets, unless its function says otherwise."""

    job_timeout_s: float
    keep_result_s: float
    keep_result_forever: bool
    max_tries: int
    #: arq's ``retry_jobs``: False makes ``Retry``, ``RetryJob`` and a job's own ``CancelledError`` final failures
    retry_jobs: bool = True
    #: arq's ``allow_abort_jobs`` (our default: True): False runs a job to its end even when asked to abort
    allow_abort_jobs: bool = True
    #: arq's ``log_results``: the per-job DEBUG line of a success shows the result (truncated, as arq's INFO line)
    log_results: bool = True
    #: jobs larger than this (from producers that do not check, such as plain arq) are dead-lettered unread
    max_payload_bytes: int = k.DEFAULT_MAX_PAYLOAD_BYTES
    #: a result larger than this, encoded, fails the job instead of being stored
    max_result_bytes: int = k.DEFAULT_MAX_RESULT_BYTES

    @classmethod
    def of(cls, worker: Any) -> ResultPolicy:
        """The policy of a worker built from arq's options (``worker.py``)."""
        return cls(
            worker.job_timeout_s, worker.keep_result_s, worker.keep_result_forever, worker.max_tries,
            retry_jobs=worker.retry_jobs, allow_abort_jobs=worker.allow_abort_jobs, log_results=worker.log_results,
            max_payload_bytes=worker.max_payload_bytes, max_result_bytes=worker.max_result_bytes,
        )  # fmt: skip
