"""An arq app's settings, started with arq's own command, run under our worker as they would under arq."""

from __future__ import annotations

import asyncio
import signal

from arq.connections import ArqRedis

from tests.conftest import StartWorker


async def test_an_arq_app_runs_under_arqs_command(redis: ArqRedis, start_process_worker: StartWorker) -> None:
    proc = start_process_worker("tests.arq_app_settings.ArqAppSettings")
    job = await redis.enqueue_job("multiply", 6, 7, _job_id="product")  # arq's client, our JSON codec
    assert job is not None
    assert await job.result(timeout=20, poll_delay=0.02) == 42
    for _ in range(200):
        if len(await redis.lrange("app:ticks", 0, -1)) >= 2 and await redis.llen("app:hooks") >= 4:
            break
        await asyncio.sleep(0.05)
    ticks = await redis.lrange("app:ticks", 0, -1)
    assert len(ticks) >= 2 and len(set(ticks)) == len(ticks)  # arq.cron ran, each tick once
    hooks = await redis.lrange("app:hooks", 0, -1)
    assert b"start product" in hooks and b"written product" in hooks
    assert hooks.index(b"start product") < hooks.index(b"written product")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0
