"""What a job tells while it runs and after: each try's error, progress, and abort."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from arq.connections import ArqRedis

from src.runner import JobAborted, JobClient, JobContext, JobStatus
from src.runner import constants as k
from src.runner.worker import Worker
from tests.sample_jobs import add, flaky, nap, reports
from tests.waiting import wait_for


async def test_each_retried_tries_error_is_in_the_info(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([flaky])
    handle = await client.enqueue(flaky, 2)
    assert await handle.result(timeout_s=5) == 3
    errors = (await handle.info()).try_errors
    assert [(e["try"], e["type"], e["message"]) for e in errors] == [
        (1, "ConnectionError", "try 1 failed"),
        (2, "ConnectionError", "try 2 failed"),
    ]


async def test_progress_is_visible_while_the_job_runs(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    running_worker([reports])
    handle = await client.enqueue(reports, 0.5)

    async def reported() -> dict[str, Any] | None:
        return (await handle.info()).progress

    progress = await wait_for(reported, message="progress reported")
    assert progress is not None and progress["fraction"] == 0.5 and progress["meta"] == {"step": "half"}
    assert await handle.status() is JobStatus.in_progress


async def test_progress_is_a_fraction() -> None:
    ctx = JobContext("j", 1, 1, datetime.now(), "f")
    with pytest.raises(ValueError, match="fraction"):
        await ctx.progress(1.5)


async def test_abort_a_queued_job(client: JobClient, redis: ArqRedis) -> None:
    handle = await client.enqueue(add.options(defer_by=60), 1)
    assert await handle.abort() is True
    assert await redis.zcard(k.default_queue_name) == 0
    with pytest.raises(JobAborted):
        await handle.result(timeout_s=1)


async def test_abort_a_running_job_quickly_and_it_is_not_retried(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker([nap])
    handle = await client.enqueue(nap, 30)

    async def in_progress() -> bool:
        return await handle.status() is JobStatus.in_progress

    await wait_for(in_progress, message="the job in progress")
    started = time.monotonic()
    assert await handle.abort() is True
    assert time.monotonic() - started < 0.5  # the worker checks the abort set every 50 ms while jobs run
    assert await redis.zcard(k.default_queue_name) == 0


async def test_abort_unknown_job(client: JobClient) -> None:
    assert await client.handle(add, "nope").abort() is False
