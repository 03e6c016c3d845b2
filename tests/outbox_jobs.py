"""The outbox tests' job: counts its runs in Redis, so "ran once" is something to read."""

from __future__ import annotations

import asyncio

from src.runner import JobContext, job


@job
async def count_run(ctx: JobContext, order_id: int) -> int:
    return int(await ctx.redis.incr(f"test:runs:{order_id}"))


@job(max_concurrency=1)
async def one_order_at_a_time(ctx: JobContext, order_id: int) -> int:
    """Records how many of its runs were running when it started (``test:peaks``)."""
    await ctx.redis.rpush("test:peaks", await ctx.redis.incr("test:now_running"))
    await asyncio.sleep(0.02)
    await ctx.redis.decr("test:now_running")
    return order_id
