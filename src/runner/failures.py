"""Failed tries and dead letters, reported to whoever watches: the worker's ``on_job_failed`` hooks and the error
trackers that registered themselves (``sentry.py``).

A hook gets one :class:`JobFailure`: a try that failed and will be retried (``dead`` false, ``retry_in_s`` set),
or a job that goes to the dead-letter queue (``dead`` true, ``reason`` says why: ``tries exhausted``,
``permanent failure``, ``payload refused``, ``unknown function`` …). It is called in the job's task, after the
outcome is decided and handed to the writer, so the job's log fields (``current_job.py``) are still bound. A hook
may be a plain function or a coroutine function; one that raises is logged and changes nothing — the outcome is
already decided. Successful jobs cost nothing here: only a failure reaches this module.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

logger = logging.getLogger("hasten.worker")


@dataclass(frozen=True, slots=True)
class JobFailure:
    job_id: str
    function: str
    job_try: int
    queue: str
    #: what the try raised (a timeout is a ``JobTimeout``; a refused payload arq's ``DeserializationError``)
    error: BaseException
    #: the job goes to the dead-letter queue (else it is retried)
    dead: bool
    #: why it is dead-lettered (empty for a retried try)
    reason: str = ""
    #: for a retried try: when the next one is due, from now
    retry_in_s: float | None = None


FailureHook = Callable[[JobFailure], Awaitable[None] | None]

#: hooks of every worker in this process, added by error-tracker integrations (``sentry.py``)
_GLOBAL: list[FailureHook] = []


def add_global_hook(hook: FailureHook) -> None:
    """Report the failures of every worker in this process to ``hook`` (idempotent)."""
    if hook not in _GLOBAL:
        _GLOBAL.append(hook)


def remove_global_hook(hook: FailureHook) -> None:
    if hook in _GLOBAL:
        _GLOBAL.remove(hook)


def hooks_of(on_job_failed: FailureHook | Sequence[FailureHook] | None) -> tuple[FailureHook, ...]:
    """A worker's ``on_job_failed`` option (one hook, several, or none) as a tuple."""
    if on_job_failed is None:
        return ()
    if callable(on_job_failed):
        return (on_job_failed,)
    return tuple(on_job_failed)


async def report(failure: JobFailure, hooks: Iterable[FailureHook]) -> None:
    """Call the worker's ``hooks`` and the global ones with ``failure``; a hook that raises is logged."""
    for hook in (*hooks, *_GLOBAL):
        try:
            called = hook(failure)
            if inspect.isawaitable(called):
                await called
        except Exception:
            logger.exception("on_job_failed hook %r raised on job %s (the job's outcome stands)", hook, failure.job_id)
