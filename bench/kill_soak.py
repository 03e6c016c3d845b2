"""Duplicates per SIGKILL: ``python -m bench.kill_soak [runs]``.

Two worker processes at the default concurrency drain 2,000 ``soaked`` jobs (each counts its runs per job id in
Redis first, then INCRs a counter: a near no-op body; five tries) enqueued in 20 bursts of 100. In each burst,
once a random 10 to 90 of its jobs have started, one worker is SIGKILLed and a new one started: the worst case,
a kill in the middle of a burst (a kill between bursts finds nothing in flight). A job that ran more than once
is a duplicate: either it was in its body at the kill, or it had finished and its outcome was not yet written
(the window the group-committing finisher keeps to one write). Prints duplicates per kill for each run and
their median.
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

from arq.connections import RedisSettings, create_pool

from bench.jobs import DONE, SEEN, soaked
from src.runner import Codec, JobClient
from src.runner import constants as k
from src.runner.redis_server import RedisServer

KILLS = 20
JOBS = 2000
LEASE_S = "1"


def _worker(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JOBS_LEASE_S": LEASE_S, "BENCH_N": str(JOBS)}
    args = [sys.executable, "-m", "bench.worker", "ours", str(port)]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def one_run(seed: int) -> float:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), options={"save": "''", "appendonly": "no"}).start()
        pool = await create_pool(RedisSettings(port=server.port))
        client = JobClient(pool, Codec())
        workers = [_worker(server.port) for _ in range(2)]
        try:
            while await pool.zcard(k.IDLE_KEY_PREFIX + k.default_queue_name) < 2:
                await asyncio.sleep(0.05)
            for burst in range(KILLS):
                await client.enqueue_many([soaked.call() for _ in range(JOBS // KILLS)])
                # the kill lands in the middle of the burst: after 10 to 90 of its 100 jobs started
                target = burst * (JOBS // KILLS) + rng.randint(10, 90)
                while await pool.hlen(SEEN) < target:
                    await asyncio.sleep(0)
                victim = workers.pop(rng.randrange(len(workers)))
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                workers.append(_worker(server.port))
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
    lost = sum(n - 1 for n in done)
    print(
        f"  {sum(n - 1 for n in seen)} duplicates ({lost} of jobs that had finished: outcome not yet written), "
        f"{dead} dead-lettered after a killed try"
    )
    return sum(n - 1 for n in seen) / KILLS


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    per_kill = [asyncio.run(one_run(seed)) for seed in range(runs)]
    for seed, value in enumerate(per_kill):
        print(f"run {seed}: {value:.2f} duplicates per kill")
    print(f"median of {runs}: {statistics.median(per_kill):.2f} duplicates per kill ({KILLS} kills, {JOBS} jobs)")


if __name__ == "__main__":
    main()
