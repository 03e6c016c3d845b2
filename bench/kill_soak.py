"""Duplicates per SIGKILL: ``python -m bench.kill_soak [runs]``, ours and stock arq in the same run.

Two worker processes at our default concurrency (50; stock arq tuned at the same ``max_jobs``) drain 2,000
``soaked`` jobs (each counts its runs per job id in Redis first, then, as its last step, the runs that got to
their end: a near no-op body; five tries) enqueued in 20 bursts of 100. In each burst, once a random 10 to 90 of
its jobs have started, one worker is SIGKILLed and a new one started: the worst case, a kill in the middle of a
burst (a kill between bursts finds nothing in flight). Two figures per kill:

- **finished twice**: a job whose body got to its end more than once — it had finished and its outcome was not
  yet written (the window the finisher keeps to one turn of the loop), or its last command had reached Redis
  and its reply had not reached the worker. This is the duplicate window the runner decides.
- **started twice**: also counts a job that was in its body at the kill and ran again — at-least-once, which no
  runner avoids with 50 jobs in flight.

Prints both per run, their medians, and stock arq's in the same run.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import health_check_key_suffix

from bench.jobs import DONE, SEEN, soaked
from src.runner import Codec, JobClient
from src.runner import constants as k
from src.runner.redis_server import RedisServer

KILLS = 20
JOBS = 2000
LEASE_S = "1"


def _worker(variant: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JOBS_LEASE_S": LEASE_S, "BENCH_ARQ_JOB_TIMEOUT_S": LEASE_S, "BENCH_N": str(JOBS)}
    args = [sys.executable, "-m", "bench.worker", variant, str(port), str(k.DEFAULT_MAX_JOBS)]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _ready(pool: ArqRedis, variant: str) -> None:
    if variant == "ours":
        while await pool.zcard(k.IDLE_KEY_PREFIX + k.default_queue_name) < 2:
            await asyncio.sleep(0.05)
    else:
        while not await pool.exists(k.default_queue_name + health_check_key_suffix):
            await asyncio.sleep(0.05)


async def one_run(variant: str, seed: int) -> tuple[float, float]:
    """(started twice, finished twice) per kill."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), options={"save": "''", "appendonly": "no"}).start()
        pool = await create_pool(RedisSettings(port=server.port))
        client = JobClient(pool, Codec())
        workers = [_worker(variant, server.port) for _ in range(2)]
        try:
            await _ready(pool, variant)
            for burst in range(KILLS):
                if variant == "ours":
                    await client.enqueue_many([soaked.call() for _ in range(JOBS // KILLS)])
                else:
                    for _ in range(JOBS // KILLS):
                        await pool.enqueue_job("soaked")
                # the kill lands in the middle of the burst: after 10 to 90 of its 100 jobs started
                target = burst * (JOBS // KILLS) + rng.randint(10, 90)
                while await pool.hlen(SEEN) < target:
                    await asyncio.sleep(0)
                victim = workers.pop(rng.randrange(len(workers)))
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                workers.append(_worker(variant, server.port))
            deadline = time.monotonic() + 120
            while await pool.zcard(k.default_queue_name) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            seen = [int(v) for v in (await pool.hgetall(SEEN)).values()]
            done = [int(v) for v in (await pool.hgetall(DONE)).values()]
            # a job with one try (NO_RETRY) whose try a killed worker took before its body ran is dead-lettered,
            # as arq counts a crashed try
            dead = await pool.zcard(k.DLQ_KEY_PREFIX + k.default_queue_name)
        finally:
            for w in workers:
                w.kill()
                w.wait()
            await pool.aclose()
            server.stop()
    assert len(seen) + dead >= JOBS, f"{JOBS - len(seen) - dead} jobs neither ran nor were dead-lettered"
    started, finished = sum(n - 1 for n in seen), sum(n - 1 for n in done)
    print(f"  {variant}: {finished} finished twice, {started} started twice, {dead} dead-lettered after a killed try")
    return started / KILLS, finished / KILLS


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for variant in ("ours", "arq-tuned"):
        per_kill = [asyncio.run(one_run(variant, seed)) for seed in range(runs)]
        started = statistics.median(s for s, _ in per_kill)
        finished = statistics.median(f for _, f in per_kill)
        print(
            f"{variant}: median of {runs}: {finished:.2f} finished twice, {started:.2f} started twice per kill "
            f"({KILLS} kills, {JOBS} jobs)"
        )


if __name__ == "__main__":
    main()
