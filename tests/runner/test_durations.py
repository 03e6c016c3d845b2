"""Try durations per function: recorded by the finish script with the outcomes, read back as p50/p95 per function
across workers (``durations.py``), shown by ``hasten status``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from arq.connections import ArqRedis

from src.runner import JobClient
from src.runner import constants as k
from src.runner.durations import FunctionDurations, bucket_middle_s, bucket_of, durations
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from tests.sample_jobs import add, flaky, nap
from tests.test_cli import _hasten
from tests.waiting import wait_for


@pytest.mark.parametrize("duration_s", [2e-6, 5e-5, 1e-3, 0.0123, 0.05, 1.0, 37.5, 3600.0, 86_400.0])
def test_a_bucket_reads_back_within_nine_percent(duration_s: float) -> None:
    assert abs(bucket_middle_s(bucket_of(duration_s)) - duration_s) / duration_s <= 0.095


def test_buckets_grow_with_the_duration() -> None:
    assert bucket_of(0.0) == bucket_of(1e-7) == 0
    buckets = [bucket_of(10 ** (e / 10)) for e in range(-50, 50)]
    assert buckets == sorted(buckets) and len(set(buckets)) == len(buckets)


async def test_durations_per_function_across_workers(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker([add, nap, flaky], max_jobs=20)
    running_worker([add, nap, flaky], max_jobs=20)
    handles = [await client.enqueue(nap, 0.05) for _ in range(20)] + [await client.enqueue(add, i) for i in range(30)]
    retried = await client.enqueue(flaky, 2)  # three tries: two failed, one complete
    await redis.set(k.job_key_prefix + "never-ran", b"\xff")  # refused: its function never ran
    await redis.zadd(k.default_queue_name, {"never-ran": 1})
    for handle in [*handles, retried]:
        await handle.result(timeout_s=10)
    await wait_for(lambda: redis.exists(k.DLQ_ENTRY_KEY_PREFIX + "never-ran"), message="the refused job dead")

    async def read() -> dict[str, FunctionDurations] | None:
        found = await durations(redis, k.default_queue_name)
        return found if sum(d.tries for d in found.values()) >= 53 else None

    found = await wait_for(read, message="the tries' durations")
    assert set(found) == {"nap", "add", "flaky"}
    assert (found["nap"].tries, found["add"].tries, found["flaky"].tries) == (20, 30, 3)
    p50_s, p95_s, _ = found["nap"]
    assert 0.05 * 0.9 <= p50_s <= p95_s < 0.5
    assert found["add"].p95_s < 0.01
    keys = [key async for key in redis.scan_iter(match=f"{k.DURATIONS_KEY_PREFIX}{k.default_queue_name}:*")]
    assert keys and all([0 < await redis.pttl(key) <= k.DURATIONS_TTL_MS for key in keys])
    assert await durations(redis, "another-queue") == {}


async def test_status_shows_durations_per_function(
    client: JobClient, redis_server: RedisServer, running_worker: Callable[..., Worker]
) -> None:
    running_worker([nap])
    for handle in [await client.enqueue(nap, 0.02) for _ in range(5)]:
        await handle.result(timeout_s=10)
    done = await asyncio.to_thread(_hasten, redis_server.url, "status", "--json", "--queue", k.default_queue_name)
    assert done.returncode == 0, done.stderr
    [queue] = json.loads(done.stdout)
    assert queue["durations"]["nap"]["tries"] == 5 and queue["durations"]["nap"]["p50_s"] >= 0.018
    done = await asyncio.to_thread(_hasten, redis_server.url, "status", "--queue", k.default_queue_name)
    assert done.returncode == 0, done.stderr
    assert "try durations per function" in done.stdout
    [row] = [line for line in done.stdout.splitlines() if " nap " in f" {line} "]
    assert row.split()[-3] == "5" and row.split()[-2].endswith("ms")
