"""Log lines inside a job carry the job (id, function, try, queue), in text and in JSON, URLs still redacted."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from src.runner import JobClient, current_job
from src.runner.log_format import JobFields, TextFormatter, formatter, json_formatter
from src.runner.redact import RedactingFilter
from src.runner.worker import Worker
from tests import telemetry_jobs


@pytest.fixture
def job_caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog whose handler has the filters our handler has."""
    fields, redact = JobFields(), RedactingFilter()
    caplog.handler.addFilter(fields)
    caplog.handler.addFilter(redact)
    caplog.set_level(logging.DEBUG, logger="hasten")
    yield caplog
    caplog.handler.removeFilter(fields)
    caplog.handler.removeFilter(redact)


def _job_fields(record: logging.LogRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, name, None) for name in ("job_id", "function", "job_try", "queue"))


async def test_a_jobs_own_lines_and_the_workers_carry_the_job(
    client: JobClient, running_worker: Callable[..., Worker], job_caplog: pytest.LogCaptureFixture
) -> None:
    running_worker([telemetry_jobs.chatty, telemetry_jobs.fails_once])
    said = await client.enqueue(telemetry_jobs.chatty, word="hello")
    assert await said.result(timeout_s=10) == "hello"
    retried = await client.enqueue(telemetry_jobs.fails_once)
    assert await retried.result(timeout_s=10) == 2

    [own] = [r for r in job_caplog.records if r.getMessage() == "said hello"]
    assert own.name == "tests.telemetry_jobs"
    assert _job_fields(own) == (said.job_id, "chatty", 1, "arq:queue")
    # the worker's per-job DEBUG lines, and its line about the failed try, name the try they belong to
    starts = {getattr(r, "job_try", 0) for r in job_caplog.records if r.getMessage().startswith(f"→ {retried.job_id}")}
    assert starts == {1, 2}
    [failed_try] = [r for r in job_caplog.records if "try 1 failed" in r.getMessage()]
    assert _job_fields(failed_try) == (retried.job_id, "fails_once", 1, "arq:queue")
    # the worker's own lines outside any job carry none
    outside = [r for r in job_caplog.records if r.name == "hasten.worker" and "hasten worker on" in r.getMessage()]
    assert outside and all(_job_fields(r) == (None,) * 4 for r in outside)


def _record(message: str, *args: Any, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord("tests.telemetry_jobs", logging.ERROR, __file__, 1, message, args, exc_info)
    JobFields().filter(record)
    RedactingFilter().filter(record)
    return record


def _raised() -> ValueError:
    try:
        raise ValueError("cannot reach https://user:hunter2@example.com/x?token=abc")
    except ValueError as e:
        return e


def _in_job(job: tuple[str, str, int, str], make: Callable[[], logging.LogRecord]) -> logging.LogRecord:
    """``make()`` run as if inside a try of ``job`` (in a context of its own, as each job's task is)."""

    def inside() -> logging.LogRecord:
        current_job.bind(*job)
        return make()

    return contextvars.copy_context().run(inside)


def test_json_lines_have_the_job_as_fields_and_redacted_urls() -> None:
    record = _in_job(
        ("{q}abc", "send_email", 3, "{q}"),
        lambda: _record("failed %s", "https://user:hunter2@example.com/", exc=_raised()),
    )
    line = json_formatter().format(record)
    assert "\n" not in line and "hunter2" not in line
    fields = orjson.loads(line)
    assert fields["job_id"] == "{q}abc" and fields["function"] == "send_email"
    assert fields["job_try"] == 3 and fields["queue"] == "{q}"
    assert fields["level"] == "ERROR" and fields["logger"] == "tests.telemetry_jobs"
    assert fields["message"] == "failed https://user:***@example.com/"
    assert "ValueError" in fields["exc_info"] and "token=***" in fields["exc_info"]
    assert fields["time"].endswith("+00:00")


def test_text_lines_name_the_job_after_the_message_and_before_the_traceback() -> None:
    inside = _in_job(("abc", "send_email", 2, "arq:queue"), lambda: _record("inside", exc=_raised()))
    first, *traceback = TextFormatter().format(inside).splitlines()
    assert first.endswith("ERROR tests.telemetry_jobs: inside [job=abc fn=send_email try=2 queue=arq:queue]")
    assert traceback[0].startswith("Traceback") and "hunter2" not in "\n".join(traceback)


def test_a_line_outside_any_job_has_no_job_fields() -> None:
    record = _record("plain")
    assert _job_fields(record) == (None,) * 4
    assert TextFormatter().format(record).endswith("tests.telemetry_jobs: plain")
    assert "job_id" not in orjson.loads(formatter("json").format(record))
