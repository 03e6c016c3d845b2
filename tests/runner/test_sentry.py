"""Sentry: failed tries and dead letters are events tagged with the job, captured by a transport of our own (no
network), and so are events the job's own code sends."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.dedupe import DedupeIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.transport import Transport

from src.runner import JobClient, JobFailed
from src.runner.sentry import HastenIntegration
from src.runner.worker import Worker
from tests import telemetry_jobs
from tests.waiting import wait_for


class CapturingTransport(Transport):
    """Keeps the events Sentry would send."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.events += [item.payload.json for item in envelope.items if item.type == "event" and item.payload.json]


@pytest.fixture
def sentry_events() -> Iterator[list[dict[str, Any]]]:
    transport = CapturingTransport()
    sentry_sdk.init(
        dsn="https://key@sentry.invalid/1",
        transport=transport,
        default_integrations=False,
        # Sentry's logging integration and its dedupe are on by default in an application; with them here, the
        # worker's ERROR line about a dead letter must not become a second event
        integrations=[LoggingIntegration(), DedupeIntegration(), HastenIntegration()],
    )
    yield transport.events
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # a client without a DSN or our integration: the rest of the session reports nothing


def _job_tags(event: dict[str, Any]) -> tuple[str, ...]:
    return tuple(event["tags"].get(name) for name in ("job_id", "function", "job_try", "queue"))


async def test_a_failed_try_and_a_dead_letter_are_events_tagged_with_the_job(
    client: JobClient, running_worker: Callable[..., Worker], sentry_events: list[dict[str, Any]]
) -> None:
    running_worker([telemetry_jobs.fails_once, telemetry_jobs.doomed])
    retried = await client.enqueue(telemetry_jobs.fails_once)
    assert await retried.result(timeout_s=10) == 2
    doomed = await client.enqueue(telemetry_jobs.doomed)
    with pytest.raises(JobFailed):
        await doomed.result(timeout_s=10)
    await wait_for(lambda: len(sentry_events) >= 2)

    failed_try, dead = sentry_events
    assert _job_tags(failed_try) == (retried.job_id, "fails_once", "1", "arq:queue")
    assert failed_try["level"] == "warning" and failed_try["contexts"]["job"]["dead_letter"] is False
    [error] = failed_try["exception"]["values"]
    assert error["type"] == "ConnectionError" and error["mechanism"] == {"type": "hasten", "handled": False}

    assert _job_tags(dead) == (doomed.job_id, "doomed", "1", "arq:queue")
    assert dead["level"] == "error" and dead["transaction"] == "doomed"
    assert dead["contexts"]["job"]["reason"] == "tries exhausted"
    [error] = dead["exception"]["values"]
    assert error["type"] == "ValueError" and "hunter2" not in error["value"] and "token=***" in error["value"]
    assert error["stacktrace"]["frames"][-1]["function"] == "doomed"  # the job's own frame


async def test_dead_letters_only(
    client: JobClient, running_worker: Callable[..., Worker], sentry_events: list[dict[str, Any]]
) -> None:
    sentry_sdk.get_client().integrations["hasten"] = HastenIntegration(failed_tries=False)
    running_worker([telemetry_jobs.fails_once, telemetry_jobs.doomed])
    retried = await client.enqueue(telemetry_jobs.fails_once)
    assert await retried.result(timeout_s=10) == 2
    doomed = await client.enqueue(telemetry_jobs.doomed)
    with pytest.raises(JobFailed):
        await doomed.result(timeout_s=10)
    [dead] = await wait_for(lambda: sentry_events)
    assert dead["tags"]["job_id"] == doomed.job_id


async def test_an_event_the_job_sends_itself_is_tagged_too(
    client: JobClient, running_worker: Callable[..., Worker], sentry_events: list[dict[str, Any]]
) -> None:
    running_worker([telemetry_jobs.reports])
    handle = await client.enqueue(telemetry_jobs.reports)
    await handle.result(timeout_s=10)
    [event] = await wait_for(lambda: sentry_events)
    assert event["logentry"]["formatted"] == "something odd in reports"
    assert _job_tags(event) == (handle.job_id, "reports", "1", "arq:queue")


#: built at run time: the source lines Sentry sends around each frame must not contain it
_SECRET = "-".join(("hunter2", "secret"))


def _fail(note: str) -> None:
    raise ValueError("sign-in refused")


@pytest.mark.parametrize(("function", "shown"), [("sign_in", False), ("add", True)])
def test_a_job_that_redacts_arguments_sends_no_frame_variables(
    sentry_events: list[dict[str, Any]], function: str, shown: bool
) -> None:
    import tests.sample_jobs  # noqa: F401  # declares sign_in's redacted arguments
    from src.runner.failures import JobFailure
    from src.runner.sentry import report_failure

    try:
        _fail(_SECRET)
    except ValueError as e:
        error = e
    report_failure(JobFailure("j1", function, 1, "arq:queue", error, True, "permanent failure"))
    [event] = sentry_events
    assert (_SECRET in json.dumps(event)) is shown
