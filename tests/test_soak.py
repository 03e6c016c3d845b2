"""Soak: 50 SIGKILL/restart cycles of real worker processes over a stream of 2,000 jobs.

Nothing may be lost, and only jobs that were in flight on a killed worker may run twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from arq.connections import ArqRedis

from src.runner import JobClient
from src.runner import constants as k
from src.runner.redis_server import RedisServer
from tests.fault_settings import tick

ROOT = Path(__file__).resolve().parent.parent
CYCLES = 50
JOBS = 2000
LEASE_S = 0.5


def _start(redis_server: RedisServer) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JOBS_REDIS_URL": redis_server.url, "JOBS_LEASE_S": str(LEASE_S)}
    args = [sys.executable, "-m", "arq", "tests.fault_settings.WorkerSettings"]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_kill_restart_soak_loses_nothing(redis: ArqRedis, client: JobClient, redis_server: RedisServer) -> None:
    rng = random.Random(7)
    workers = [_start(redis_server) for _ in range(2)]
    in_flight: set[str] = set()
    handles = []
    try:
        for _ in range(CYCLES):
            calls = [tick.call(0.2) for _ in range(JOBS // CYCLES)]
            handles += await client.enqueue_many(calls)
            await asyncio.sleep(0.3)
            victim = workers.pop(rng.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            await asyncio.to_thread(victim.wait)
            in_flight |= await _started_without_result(redis, victim.pid)
            workers.append(_start(redis_server))
        await _until_all_done(redis)
    finally:
        for w in workers:
            w.kill()
            w.wait()
    runs = {key.decode(): int(v) for key, v in (await redis.hgetall("runs")).items()}
    assert len(runs) == JOBS and min(runs.values()) >= 1  # none lost
    twice = {job_id for job_id, n in runs.items() if n > 1}
    assert twice <= in_flight, twice - in_flight  # only jobs in flight at a kill ran again
    assert all([await redis.exists(k.result_key_prefix + h.job_id) for h in handles])


async def _started_without_result(redis: ArqRedis, pid: int) -> set[str]:
    """Jobs the killed process had started and not finished: their outcome died with it."""
    owners = await redis.hgetall("owner")
    mine = [key.decode() for key, owner in owners.items() if int(owner) == pid]
    return {job_id for job_id in mine if not await redis.exists(k.result_key_prefix + job_id)}


async def _until_all_done(redis: ArqRedis) -> None:
    for _ in range(1200):
        if not await redis.zcard(k.default_queue_name):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{await redis.zcard(k.default_queue_name)} jobs still queued after the soak")
