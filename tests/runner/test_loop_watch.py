"""The blocked-loop watch (``loop_watch.py``): a job that blocks the event loop is named in one WARNING; jobs that
await are not, and the lag stays readable for a gauge."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import pytest

from src.runner import NO_RETRY, JobClient, JobContext, job
from src.runner.worker import Worker
from tests.waiting import wait_for


@job(retry=NO_RETRY)
async def blocks(ctx: JobContext, seconds: float) -> None:
    time.sleep(seconds)  # the mistake the watch is for: a blocking call in an async job


@job(retry=NO_RETRY)
async def awaits(ctx: JobContext, seconds: float) -> None:
    await asyncio.sleep(seconds)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def about_the_loop(self) -> list[str]:
        return [line for line in self.lines if line.startswith("event loop")]


@pytest.fixture
def warnings() -> Iterator[_Records]:
    """WARNINGs of the worker's logger (caught here: a worker process's log set-up may stop them propagating)."""
    records = _Records()
    logger = logging.getLogger("hasten.worker")
    logger.addHandler(records)
    yield records
    logger.removeHandler(records)


async def _looks_after(worker: Worker, n: int) -> None:
    """Until the watch measured ``n`` more times (so a warning it was going to log is logged)."""
    target = worker.loop_watch.looks + n
    await wait_for(lambda: worker.loop_watch.looks >= target, 10, message="the loop watch looking")


async def _connected(client: JobClient) -> None:
    """A result awaited once, so that the client's connections (its pool's, its subscription) are open before a job
    blocks the loop this test shares with the worker: one opened during the block would time out connecting."""
    await (await client.enqueue(awaits, 0)).result(timeout_s=15)


async def test_a_job_blocking_the_loop_is_named_once(
    client: JobClient, running_worker: Callable[..., Worker], warnings: _Records
) -> None:
    worker = running_worker([blocks, awaits], loop_lag_warn_s=0.5)
    await _connected(client)
    await _looks_after(worker, 1)
    handle = await client.enqueue(blocks, 1.0)
    await handle.result(timeout_s=15)
    await _looks_after(worker, 3)
    [line] = warnings.about_the_loop()
    # the job ended within the step that blocked: the thread caught it while it ran
    assert f"by job {handle.job_id} (blocks)" in line, line
    # a timer due during the block fired this late: the block, less the part of a look it began in
    lag_s = float(line.removeprefix("event loop ").split("s late")[0])
    assert 0.7 <= lag_s < 2, line
    assert worker.loop_watch.max_lag_s == pytest.approx(lag_s, abs=0.01)
    assert worker.loop_watch.lag_s < 0.5  # the last look is after the block


async def test_jobs_that_await_are_not_reported(
    client: JobClient, running_worker: Callable[..., Worker], warnings: _Records
) -> None:
    worker = running_worker([blocks, awaits], loop_lag_warn_s=0.5)
    handles = [await client.enqueue(awaits, 0.3) for _ in range(30)]
    for handle in handles:
        await handle.result(timeout_s=15)
    await _looks_after(worker, 2)
    assert warnings.about_the_loop() == []
    assert worker.loop_watch.looks > 0 and worker.loop_watch.max_lag_s < 0.5


async def test_zero_turns_the_warning_off_but_the_lag_is_still_measured(
    client: JobClient, running_worker: Callable[..., Worker], warnings: _Records
) -> None:
    worker = running_worker([blocks, awaits], loop_lag_warn_s=0)
    await _connected(client)
    await _looks_after(worker, 1)
    handle = await client.enqueue(blocks, 1.0)
    await handle.result(timeout_s=15)
    await _looks_after(worker, 2)
    assert warnings.about_the_loop() == []
    assert worker.loop_watch.max_lag_s >= 0.7
