"""The job the running code belongs to: id, function, try and queue, in a context variable.

Each job runs in its own asyncio task, and a task copies the context it was created in, so what the executor binds
when a try starts is seen by everything that try runs — the job's own code, the libraries it calls, the worker's
lines about it — and by nothing else. Log lines (``log_format.JobFields``) and error reports (``sentry.py``) read it;
binding it is one ``ContextVar.set`` per try, so it stays on whether or not anyone reads it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import NamedTuple


class CurrentJob(NamedTuple):
    job_id: str
    function: str
    job_try: int
    queue: str


_CURRENT: ContextVar[CurrentJob | None] = ContextVar("hasten_current_job", default=None)


def bind(job_id: str, function: str, job_try: int, queue: str) -> None:
    """Mark the running task as this try of this job (the executor calls it once the job is decoded)."""
    _CURRENT.set(CurrentJob(job_id, function, job_try, queue))


def current() -> CurrentJob | None:
    """The job whose try is running in this task, if any."""
    return _CURRENT.get()
