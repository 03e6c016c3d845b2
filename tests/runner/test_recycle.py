"""Recycling (``recycle.py``) in one worker: a limit reached drains the worker like a first SIGTERM, and a signal
during that drain is still a first one (the supervisor stopping a recycling worker must not cut its jobs short)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from src.runner import JobClient, JobStatus
from src.runner.recycle import Recycler, rss_mib
from src.runner.worker import Worker
from tests.sample_jobs import nap
from tests.waiting import wait_for


async def test_a_signal_during_a_recycle_drain_still_lets_the_job_finish(
    client: JobClient, make_worker: Callable[..., Worker]
) -> None:
    recycler = Recycler(max_jobs=1)
    worker = make_worker([nap], recycle=recycler)
    run = asyncio.create_task(worker.async_run())
    handle = await client.enqueue(nap, 1.0)
    await wait_for(lambda: recycler.reason, 10, message="the recycle limit reached")
    assert recycler.reason == "1 jobs started, limit 1"
    worker.handle_sig(signal.SIGTERM)  # the supervisor stopping meanwhile: a first signal, not a second
    await asyncio.wait([run], timeout=15)
    assert run.done()  # the drain ended the worker's main task
    await worker.close()  # outcomes written, as arq's run() does after main
    assert await handle.status() is JobStatus.complete
    assert await handle.result(timeout_s=1) == 1.0


async def test_a_second_signal_during_a_recycle_drain_stops_at_once(
    client: JobClient, make_worker: Callable[..., Worker]
) -> None:
    recycler = Recycler(max_jobs=1)
    worker = make_worker([nap], recycle=recycler)
    run = asyncio.create_task(worker.async_run())
    handle = await client.enqueue(nap, 5.0)
    await wait_for(lambda: recycler.reason, 10, message="the recycle limit reached")
    worker.handle_sig(signal.SIGTERM)
    worker.handle_sig(signal.SIGTERM)
    await asyncio.wait([run], timeout=4)
    assert run.done()
    await worker.close()
    assert await handle.status() is JobStatus.queued  # back in the queue, for another worker


def test_rss_grows_with_what_the_process_keeps() -> None:
    before = rss_mib()
    kept = b"\x01" * (64 * 1024 * 1024)
    assert rss_mib() - before >= 60
    assert 10 < before < 10_000
    del kept


def test_limits() -> None:
    assert Recycler().reached(10**9) is None
    assert Recycler(max_jobs=5).reached(4) is None
    assert Recycler(max_jobs=5).reached(5) == "5 jobs started, limit 5"
    assert Recycler(max_memory_mib=1).reached(0) is not None
    assert Recycler(max_memory_mib=10**6).reached(0) is None
