"""Duplicates per SIGKILL: ``python -m bench.kill_soak [runs] [burst|stream]``, ours and stock arq in the same run.

Two worker processes at our default concurrency (50; stock arq tuned at the same ``max_jobs``) run 2,000 jobs that
count their runs per job id in Redis first and, as their last step, the runs that got to their end (five tries);
20 times one worker is SIGKILLed and a new one started. Two ways:

- **burst** (the worst case): near no-op bodies enqueued in 20 bursts of 100; each kill lands in the middle of a
  burst, once a random 10 to 90 of its jobs have started, when replies and outcomes are densest in flight.
- **stream**: all 2,000 enqueued at once, each body waiting on I/O for 0.1 to 0.5 s (a random draw) between its
  counts; a kill each time another ~100 jobs have started (a random 50 to 150), spread over the drain.

Two figures per kill:

- **finished twice**: a job whose body got to its end more than once. Its last command had reached Redis and
  either its outcome had not left the worker yet (the window the finisher decides: none, ``finish.py`` sends it
  in the step the body returned in) or the reply to that last command had not reached the worker yet.
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

from bench.jobs import DONE, SEEN, soaked, soaked_io
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


async def _enqueue(variant: str, client: JobClient, name: str, calls: list[tuple[float, ...]]) -> None:
    if variant == "ours":
        if name == "soaked":
            await client.enqueue_many([soaked.call() for _ in calls])
        else:
            await client.enqueue_many([soaked_io.call(*args) for args in calls])
    else:
        for args in calls:
            await client.redis.enqueue_job(name, *args)


async def one_run(variant: str, seed: int, mode: str = "burst") -> tuple[float, float]:
    """(started twice, finished twice) per kill."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), options={"save": "''", "appendonly": "no"}).start()
        pool = await create_pool(RedisSettings(port=server.port))
        client = JobClient(pool, Codec())
        workers = [_worker(variant, server.port) for _ in range(2)]
        try:
            await _ready(pool, variant)
            if mode == "stream":
                sleeps = [round(rng.uniform(0.1, 0.5), 3) for _ in range(JOBS)]
                await _enqueue(variant, client, "soaked_io", [(s,) for s in sleeps])
            target = 0
            for burst in range(KILLS):
                if mode == "stream":
                    # the next kill once another 50 to 150 jobs have started
                    target += rng.randint(50, 150)
                else:
                    await _enqueue(variant, client, "soaked", [()] * (JOBS // KILLS))
                    # the kill lands in the middle of the burst: after 10 to 90 of its 100 jobs started
                    target = burst * (JOBS // KILLS) + rng.randint(10, 90)
                while await pool.hlen(SEEN) < min(target, JOBS):
                    await asyncio.sleep(0.001 if mode == "stream" else 0)
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
    print(
        f"  {mode} {variant}: {finished} finished twice, {started} started twice, {dead} dead-lettered after a "
        "killed try"
    )
    return started / KILLS, finished / KILLS


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    modes = sys.argv[2:] or ["burst", "stream"]
    for mode in modes:
        for variant in ("ours", "arq-tuned"):
            per_kill = [asyncio.run(one_run(variant, seed, mode)) for seed in range(runs)]
            started = statistics.median(s for s, _ in per_kill)
            finished = statistics.median(f for _, f in per_kill)
            mean = statistics.mean(f for _, f in per_kill)
            print(
                f"{mode} {variant}: median of {runs}: {finished:.2f} finished twice (mean {mean:.2f}), "
                f"{started:.2f} started twice per kill ({KILLS} kills, {JOBS} jobs)"
            )


if __name__ == "__main__":
    main()
