"""Job listing at a million jobs (not a test): how long one page (50 rows) of ``find_jobs`` takes, per filter.

``python -m bench.joblist`` (``BENCH_JOBLIST_N`` jobs, default 1,000,000) starts its own ``redis-server``, writes
the jobs with pipelines as our client would store them (payloads from the codec), and times each listing case
five times (median, max): the unfiltered list (first page, and a page half-way down through its cursor), each
state, a due-time range, an id prefix, a common function and a rare one (10 jobs in the million). A filtered page
reports the rows it examined and whether it ended with a cursor (a bounded scan that did not fill its page).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from redis.asyncio import Redis

from src.runner import Codec
from src.runner import constants as k
from src.runner.queue_admin import JobPage, find_jobs, list_jobs
from src.runner.redis_server import RedisServer

N = int(os.environ.get("BENCH_JOBLIST_N", "1000000"))
QUEUE = "bench:joblist"
RARE_EVERY = N // 10
RUNNING = 50
#: a tenth of the jobs are due later; of those, a tenth have failed a try (retrying)
LATER_EVERY = 10


async def fill(redis: Redis, codec: Codec) -> None:
    """N jobs: ``common`` most, ``other`` every 7th, ``rare`` 10 in all; one due every 10 ms back from now, every
    tenth due in the future instead, a tenth of those retrying; ``RUNNING`` jobs hold an in-progress key."""
    now_ms = int(time.time() * 1000)
    batch = 10_000
    for start in range(0, N, batch):
        async with redis.pipeline(transaction=False) as pipe:
            scores: dict[str, int] = {}
            for i in range(start, min(start + batch, N)):
                job_id = f"{i:08x}{'ab' * 12}"
                function = "rare" if i % RARE_EVERY == RARE_EVERY // 2 else "other" if i % 7 == 0 else "common"
                data = {"t": None, "f": function, "a": [], "k": {"n": i, "note": "x" * 40}, "et": now_ms - N * 10}
                later = i % LATER_EVERY == 0
                scores[job_id] = now_ms + 3_600_000 + i if later else now_ms - (N - i) * 10
                pipe.set(k.job_key_prefix + job_id, codec.dumps(data))
                if later and i % (LATER_EVERY * 10) == 0:
                    pipe.set(k.retry_key_prefix + job_id, 1)
                if i % (N // RUNNING) == 1:
                    pipe.set(k.in_progress_key_prefix + job_id, "bench-worker")
            pipe.zadd(QUEUE, scores)
            await pipe.execute()


async def timed(read: Callable[[], Awaitable[JobPage]], runs: int = 5) -> tuple[float, float, JobPage]:
    samples, page = [], None
    for _ in range(runs):
        started = time.perf_counter()
        page = await read()
        samples.append((time.perf_counter() - started) * 1000)
    assert page is not None
    return statistics.median(samples), max(samples), page


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), options={"save": "''", "appendonly": "no"}).start()
        try:
            await bench(Redis.from_url(server.url))
        finally:
            server.stop()


async def bench(redis: Redis) -> None:
    codec = Codec()
    started = time.perf_counter()
    await fill(redis, codec)
    print(f"wrote {await redis.zcard(QUEUE):,} jobs in {time.perf_counter() - started:.1f}s", flush=True)
    now_ms = int(time.time() * 1000)
    [(middle, score)] = await redis.zrange(QUEUE, N // 2, N // 2, withscores=True)
    halfway = f"{int(score)}:{middle.decode()}"

    def find(**filters: object) -> Callable[[], Awaitable[JobPage]]:
        return lambda: find_jobs(redis, codec.loads, QUEUE, limit=50, **filters)  # type: ignore[arg-type]

    async def offset_page(offset: int) -> JobPage:
        return JobPage(await list_jobs(redis, codec.loads, QUEUE, offset=offset, limit=50), None, offset + 50)

    cases: list[tuple[str, Callable[[], Awaitable[JobPage]]]] = [
        ("unfiltered, first page", find()),
        ("unfiltered, page half-way (cursor)", find(cursor=halfway)),
        ("unfiltered, offset 10,000 (old paging)", lambda: offset_page(10_000)),
        ("status queued", find(state="queued")),
        ("status deferred", find(state="deferred")),
        ("status retrying", find(state="retrying")),
        ("status running (50 in 1M)", find(state="running")),
        ("due-time range (an hour, mid-queue)", find(due_from_ms=now_ms - N * 5, due_to_ms=now_ms - N * 5 + 3_600_000)),
        ("id prefix (256 jobs, mid-queue)", find(id_prefix=f"{N // 2:08x}"[:6])),
        ("function common (~86 %)", find(function="common")),
        ("function other (1 in 7)", find(function="other")),
        ("function rare (10 in 1M), one request", find(function="rare")),
    ]
    print(f"{'case':44} {'median ms':>10} {'max ms':>8} {'rows':>5} {'scanned':>9}  cursor", flush=True)
    for name, read in cases:
        median_ms, max_ms, page = await timed(read)
        more = "yes" if page.cursor else "no"
        print(f"{name:44} {median_ms:10.1f} {max_ms:8.1f} {len(page.jobs):5} {page.scanned:9,}  {more}", flush=True)

    # a rare function's every job, by following the cursor to the end: how many requests, how long in all
    started, requests, found, cursor = time.perf_counter(), 0, 0, None
    while True:
        page = await find_jobs(redis, codec.loads, QUEUE, function="rare", cursor=cursor, limit=50)
        requests, found, cursor = requests + 1, found + len(page.jobs), page.cursor
        if cursor is None:
            break
    total_s = time.perf_counter() - started
    print(f"function rare, whole queue by cursor: {found} jobs in {requests} requests, {total_s:.2f}s "
          f"({total_s / requests * 1000:.0f} ms per request)")  # fmt: skip


if __name__ == "__main__":
    uvloop.run(main())
