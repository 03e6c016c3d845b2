"""``on_job_failed``: every failed try and every dead letter reaches the hooks, successes never do."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from src.runner import JobClient, JobFailed, JobFailure
from src.runner import failures as failures_module
from src.runner.worker import Worker
from tests import telemetry_jobs
from tests.sample_jobs import add
from tests.waiting import wait_for


async def test_failed_tries_and_dead_letters_reach_the_hooks(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    seen: list[JobFailure] = []

    async def on_job_failed(failure: JobFailure) -> None:
        seen.append(failure)

    running_worker(
        [telemetry_jobs.fails_once, telemetry_jobs.doomed, telemetry_jobs.chatty], on_job_failed=on_job_failed
    )
    retried = await client.enqueue(telemetry_jobs.fails_once)
    assert await retried.result(timeout_s=10) == 2
    ok = await client.enqueue(telemetry_jobs.chatty, word="fine")
    assert await ok.result(timeout_s=10) == "fine"
    doomed = await client.enqueue(telemetry_jobs.doomed)
    with pytest.raises(JobFailed):
        await doomed.result(timeout_s=10)
    await wait_for(lambda: len(seen) >= 2)

    first, dead = seen
    assert (first.job_id, first.function, first.job_try, first.queue) == (retried.job_id, "fails_once", 1, "arq:queue")
    assert not first.dead and first.reason == "" and first.retry_in_s is not None and first.retry_in_s > 0
    assert isinstance(first.error, ConnectionError)
    assert (dead.job_id, dead.function, dead.job_try, dead.dead) == (doomed.job_id, "doomed", 1, True)
    assert dead.reason == "tries exhausted" and isinstance(dead.error, ValueError) and dead.retry_in_s is None


async def test_a_job_that_never_ran_is_reported_when_dead_lettered(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    seen: list[JobFailure] = []
    running_worker([telemetry_jobs.chatty], on_job_failed=seen.append)  # a plain function will do
    unknown = await client.enqueue(add, 1, 2)  # this worker has no `add`
    with pytest.raises(JobFailed):
        await unknown.result(timeout_s=10)
    [failure] = await wait_for(lambda: seen)
    assert (failure.job_id, failure.function, failure.dead, failure.reason) == (
        unknown.job_id, "add", True, "unknown function",
    )  # fmt: skip


async def test_a_hook_that_raises_is_logged_and_the_others_still_run(
    client: JobClient, running_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken(failure: JobFailure) -> None:
        raise RuntimeError("tracker down")

    def global_hook(failure: JobFailure) -> None:
        seen.append(failure.job_id)

    failures_module.add_global_hook(global_hook)
    try:
        running_worker([telemetry_jobs.doomed], on_job_failed=[broken])
        doomed = await client.enqueue(telemetry_jobs.doomed)
        with pytest.raises(JobFailed, match="never works"):
            await doomed.result(timeout_s=10)
        await wait_for(lambda: seen == [doomed.job_id])
    finally:
        failures_module.remove_global_hook(global_hook)
    [logged] = [r for r in caplog.records if "on_job_failed hook" in r.getMessage()]
    assert logged.levelno == logging.ERROR and logged.exc_info is not None
