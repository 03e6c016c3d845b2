"""Sentry for jobs (the ``sentry`` extra): an event for every failed try and dead letter, and the job on every event
sent from inside one.

Sentry's own arq integration patches ``arq.worker.Worker.run_job``, which this worker does not call, so it would
see nothing. This one is fed by the failure hooks (``failures.py``) instead::

    import sentry_sdk
    from src.runner.sentry import HastenIntegration

    sentry_sdk.init(dsn=..., integrations=[HastenIntegration()])

(or set ``JOBS_SENTRY_DSN`` and the worker does that). Events carry the tags ``job_id``, ``function``, ``job_try``
and ``queue`` and a ``job`` context; a dead letter is an ``error``, a try that will be retried a ``warning``
(``HastenIntegration(failed_tries=False)``: dead letters only). Events of a job that redacts arguments
(``@job(redact=...)``) carry no frame's local variables. An event the job's own code sends — an exception it
captures, an ERROR line Sentry's logging integration picks up — gets the same tags, read from the job bound to the
running task (``current_job.py``), so nothing is done per job. The worker's own ERROR line about a dead letter is
not sent a second time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.integrations import Integration
from sentry_sdk.integrations.arq import ArqIntegration
from sentry_sdk.integrations.dedupe import DedupeIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.scope import add_global_event_processor
from sentry_sdk.utils import event_from_exception

if TYPE_CHECKING:
    from sentry_sdk._types import Event

from . import current_job, failures
from .redact import redact_text, redacted_paths


class HastenIntegration(Integration):
    """Reports job failures to Sentry and tags events sent from inside jobs (see the module docstring)."""

    identifier = "hasten"

    def __init__(self, *, failed_tries: bool = True) -> None:
        self.failed_tries = failed_tries

    @staticmethod
    def setup_once() -> None:
        failures.add_global_hook(report_failure)
        add_global_event_processor(_tag_event)


def init(dsn: str, **options: Any) -> None:
    """``sentry_sdk.init`` with this integration (what ``JOBS_SENTRY_DSN`` does in a worker process); ``options``
    are Sentry's own (``environment``, ``release``, ``sample_rate`` …)."""
    integrations = [*options.pop("integrations", ()), HastenIntegration()]
    # Sentry switches these on by itself when the packages are installed: redis records every command the worker
    # sends (a cost on every job), and arq's wraps arq's Worker, which this worker replaces
    disabled = [*options.pop("disabled_integrations", ()), RedisIntegration(), ArqIntegration()]
    sentry_sdk.init(dsn=dsn, integrations=integrations, disabled_integrations=disabled, **options)


def _tags(job: current_job.CurrentJob | failures.JobFailure) -> dict[str, str]:
    return {"job_id": job.job_id, "function": job.function, "job_try": str(job.job_try), "queue": job.queue}


def report_failure(failure: failures.JobFailure) -> None:
    """One event for a failed try or a dead letter (a failure hook, registered by :class:`HastenIntegration`)."""
    client = sentry_sdk.get_client()
    integration = client.get_integration(HastenIntegration)
    if integration is None or not (failure.dead or integration.failed_tries):
        return
    event, hint = event_from_exception(failure.error, client.options, {"type": "hasten", "handled": False})
    event["level"] = "error" if failure.dead else "warning"
    event["tags"] = {**event.get("tags", {}), **_tags(failure)}
    job = {"dead_letter": failure.dead, "reason": failure.reason, "retry_in_s": failure.retry_in_s}
    event["contexts"] = {**event.get("contexts", {}), "job": {**_tags(failure), **job}}
    event["transaction"] = failure.function
    if redacted_paths(failure.function):
        _drop_frame_variables(event)
    # the worker's ERROR line carried the same exception a moment ago: Sentry's dedupe would drop this event
    DedupeIntegration.reset_last_seen()
    sentry_sdk.capture_event(event, hint=hint)


def _tag_event(event: Event, hint: dict[str, Any]) -> Event | None:
    if sentry_sdk.get_client().get_integration(HastenIntegration) is None:
        return event
    if event.get("logger") == "hasten.worker" and (event.get("extra") or {}).get("outcome") == "dead":
        return None  # the worker's line about a dead letter: report_failure sends that one, with the job
    job = current_job.current()
    if job is not None:
        tags = event.setdefault("tags", {})
        for name, value in _tags(job).items():
            tags.setdefault(name, value)
        if redacted_paths(job.function):
            _drop_frame_variables(event)
    _redact(event)
    return event


def _redact(event: Event) -> None:
    """URLs in exception messages and log messages lose their credentials, as in our logs (``redact.py``)."""
    for exception in (event.get("exception") or {}).get("values") or ():
        if isinstance(exception.get("value"), str):
            exception["value"] = redact_text(exception["value"])
    logentry: dict[str, Any] | None = event.get("logentry")  # type: ignore[assignment]  # typed read-only
    if logentry:
        for key in ("message", "formatted"):
            if isinstance(logentry.get(key), str):
                logentry[key] = redact_text(logentry[key])
        if logentry.get("params"):
            logentry["params"] = [redact_text(p) if isinstance(p, str) else p for p in logentry["params"]]


def _drop_frame_variables(event: Event) -> None:
    """A job that redacts arguments: no frame's local variables leave (Sentry records them by default, and the
    job's own frame holds the arguments)."""
    values = (event.get("exception") or {}).get("values") or ()
    threads = (event.get("threads") or {}).get("values") or ()
    for holder in (*values, *threads):
        for frame in (holder.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
