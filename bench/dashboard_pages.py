"""How long the dashboard's pages take with a large queue (not a test): ``python -m bench.dashboard_pages``.

Enqueues ``BENCH_DASHBOARD_JOBS`` jobs (default 1,000,000; through ``enqueue_many``, a few minutes) into a
redis-server of its own, then times each page in process (ASGI, no network), median of 5.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx2
from arq.connections import RedisSettings, create_pool

from bench.jobs import noop
from src.runner import Codec, JobClient
from src.runner.dashboard import DashboardOptions, dashboard
from src.runner.redis_server import RedisServer

PAGES = ["/", "/jobs", "/jobs?status=deferred", "/dead-letters", "/api/queues", "/api/jobs"]


async def main() -> None:
    jobs = int(os.environ.get("BENCH_DASHBOARD_JOBS", "1000000"))
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(Path(data), options={"save": "''", "appendonly": "no"})
        server.start()
        try:
            codec = Codec()
            settings = RedisSettings(host="127.0.0.1", port=server.port)
            redis = await create_pool(settings, job_serializer=codec.dumps, job_deserializer=codec.loads)
            client = JobClient(redis, codec)
            started = time.perf_counter()
            for first in range(0, jobs, 5000):  # due over the next two hours: all deferred
                calls = [
                    noop.options(defer_by=3600 + (first + i) % 7200).call() for i in range(min(5000, jobs - first))
                ]
                await client.enqueue_many(calls)
            print(f"{jobs:,} jobs enqueued in {time.perf_counter() - started:.0f} s")
            app = dashboard(redis=redis, options=DashboardOptions(jobs=(noop,)))
            transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 1))
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                for path in PAGES:
                    times = []
                    for _ in range(5):
                        started = time.perf_counter()
                        response = await http.get(path, headers={"accept": "text/html"})
                        times.append(time.perf_counter() - started)
                        response.raise_for_status()
                    print(f"{path:24} median {statistics.median(times) * 1000:6.1f} ms")
            await redis.aclose()
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
