"""Jobs with limits, and WorkerSettings to run them in real worker processes:
``arq tests.limit_jobs.WorkerSettings``. Each job notes in Redis how many runs of its bucket were running when it
started (``peaks:<bucket>``), and when it started (``starts:<function>``), so a test can check the limits from
outside the workers."""

from __future__ import annotations

import asyncio
import os
import time

from arq.connections import RedisSettings

from src.runner import JobContext, job, launch

launch.install()

#: lease of the test workers (s): a killed worker's slots come back within it
LEASE_S = float(os.environ.get("JOBS_LEASE_S", "2"))


async def _run(ctx: JobContext, bucket: str, seconds: float) -> None:
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.incr(f"active:{bucket}")
        pipe.hincrby(f"active-by-pid:{bucket}", str(os.getpid()), 1)
        pipe.rpush(f"starts:{bucket}", f"{time.time()} {os.getpid()} {ctx.job_id}")
        running, *_ = await pipe.execute()
    await ctx.redis.rpush(f"peaks:{bucket}", running)
    try:
        await asyncio.sleep(seconds)
    finally:
        async with ctx.redis.pipeline(transaction=True) as pipe:
            pipe.decr(f"active:{bucket}")
            pipe.hincrby(f"active-by-pid:{bucket}", str(os.getpid()), -1)
            await pipe.execute()


@job(max_concurrency=5)
async def five_at_once(ctx: JobContext, seconds: float) -> None:
    await _run(ctx, "five_at_once", seconds)


@job(max_concurrency=1, concurrency_key="customer")
async def one_per_customer(ctx: JobContext, customer: str, seconds: float) -> None:
    await _run(ctx, f"customer-{customer}", seconds)
    await _run(ctx, "all-customers", 0)


@job(max_concurrency=2, concurrency_key=lambda args: args.order.split("-")[0])
async def two_per_shop(ctx: JobContext, order: str, seconds: float) -> None:
    await _run(ctx, f"shop-{order.split('-')[0]}", seconds)


@job(rate_limit="20/s")
async def twenty_a_second(ctx: JobContext) -> None:
    await ctx.redis.rpush("starts:twenty_a_second", time.time())


@job
async def unlimited(ctx: JobContext, seconds: float) -> None:
    await _run(ctx, "unlimited", seconds)


class WorkerSettings:
    functions = (five_at_once, one_per_customer, two_per_shop, twenty_a_second, unlimited)
    redis_settings = RedisSettings.from_dsn(os.environ.get("JOBS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    lease_s = LEASE_S
    max_jobs = 20
    poll_delay = 0.5
