"""Soak: 50 SIGKILL/restart cycles of real worker processes over a stream of 2,000 jobs.

Nothing may be lost, and only jobs that were in flight on a killed worker may run twice.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess

from arq.connections import ArqRedis

from src.runner import JobClient
from src.runner import constants as k
from tests.conftest import StartWorker
from tests.fault_settings import tick
from tests.waiting import wait_for

CYCLES = 50
JOBS = 2000
LEASE_S = 0.5


async def test_kill_restart_soak_loses_nothing(
    redis: ArqRedis, client: JobClient, start_process_worker: StartWorker
) -> None:
    rng = random.Random(7)

    def start() -> subprocess.Popen[bytes]:
        return start_process_worker("tests.fault_settings.WorkerSettings", JOBS_LEASE_S=str(LEASE_S))

    workers = [start() for _ in range(2)]
    in_flight: set[str] = set()
    handles = []
    for _ in range(CYCLES):
        calls = [tick.call(0.2) for _ in range(JOBS // CYCLES)]
        handles += await client.enqueue_many(calls)
        await asyncio.sleep(0.3)  # the soak's rhythm: a kill lands wherever the workers are by then
        victim = workers.pop(rng.randrange(len(workers)))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)  # reaped at once (SIGKILL); no thread hand-off before the in-flight snapshot
        in_flight |= await _started_without_result(redis, victim.pid)
        workers.append(start())
    await _until_all_done(redis)
    runs = {key.decode(): int(v) for key, v in (await redis.hgetall("runs")).items()}
    assert len(runs) == JOBS and min(runs.values()) >= 1  # none lost
    twice = {job_id for job_id, n in runs.items() if n > 1}
    assert twice <= in_flight, await _who_ran(redis, twice - in_flight)  # only jobs in flight at a kill ran again
    assert all([await redis.exists(k.result_key_prefix + h.job_id) for h in handles])


async def _started_without_result(redis: ArqRedis, pid: int) -> set[str]:
    """Jobs the killed process had started and not finished: their outcome died with it.

    Read as soon as the process is gone, in one round trip: another worker runs these again only once their lease
    (at least two thirds of ``LEASE_S`` after the kill) ran out, and a result it writes must not hide them."""
    started = [job_id.decode() for job_id in await redis.lrange(f"started:{pid}", 0, -1)]
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in started:
            pipe.exists(k.result_key_prefix + job_id)
        have_result = await pipe.execute()
    return {job_id for job_id, done in zip(started, have_result, strict=True) if not done}


async def _who_ran(redis: ArqRedis, job_ids: set[str]) -> dict[str, list[str]]:
    """For a failure message: the processes that started each of ``job_ids``, in order of their pids."""
    ran: dict[str, list[str]] = {job_id: [] for job_id in job_ids}
    for key in sorted(await redis.keys("started:*"), key=lambda key: int(key.split(b":")[1])):
        for job_id in {j.decode() for j in await redis.lrange(key, 0, -1)} & job_ids:
            ran[job_id].append(key.decode())
    return ran


async def _until_all_done(redis: ArqRedis) -> None:
    async def drained() -> bool:
        return not await redis.zcard(k.default_queue_name)

    await wait_for(drained, 60, interval_s=0.05, message="the queue drained after the soak")
