"""The outbox tests' job: counts its runs in Redis, so "ran once" is something to read."""

from __future__ import annotations

from src.runner import JobContext, job


@job
async def count_run(ctx: JobContext, order_id: int) -> int:
    return int(await ctx.redis.incr(f"test:runs:{order_id}"))
