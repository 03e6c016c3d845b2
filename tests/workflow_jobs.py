"""Jobs the workflow tests chain, group and fan in; each counts its runs in Redis (hash ``runs``, by job id), so a
test can tell how often a step ran. ``arq tests.workflow_settings.WorkerSettings`` runs them in a worker process."""

from __future__ import annotations

import asyncio
import os

from src.runner import Backoff, JobContext, Permanent, job


async def _count(ctx: JobContext) -> None:
    await ctx.redis.hincrby("runs", ctx.job_id, 1)


@job(retry=Backoff(max_tries=3, base_s=0.05))
async def plus_one(ctx: JobContext, x: int) -> int:
    await _count(ctx)
    return x + 1


@job(retry=Backoff(max_tries=3, base_s=0.05))
async def add(ctx: JobContext, x: int, y: int) -> int:
    await _count(ctx)
    return x + y


@job(retry=Backoff(max_tries=3, base_s=0.05))
async def total(ctx: JobContext, xs: list[int]) -> int:
    await _count(ctx)
    return sum(xs)


@job(retry=Backoff(max_tries=3, base_s=0.05))
async def text(ctx: JobContext, x: int, prefix: str = "n=") -> str:
    await _count(ctx)
    return f"{prefix}{x}"


@job(retry=Backoff(max_tries=3, base_s=0.05))
async def refuse(ctx: JobContext, x: int) -> int:
    """Fails for good on its first try."""
    await _count(ctx)
    raise Permanent(f"no to {x}")


@job(retry=Backoff(max_tries=3, base_s=0.05))
async def flaky_once(ctx: JobContext, x: int) -> int:
    """Fails its first try, then succeeds."""
    await _count(ctx)
    if ctx.job_try == 1:
        raise RuntimeError("first try fails")
    return x * 2


@job(retry=Backoff(max_tries=3, base_s=0.05))
async def slow(ctx: JobContext, x: int) -> int:
    """Runs until cancelled or 30 s: a member still running when another fails."""
    await _count(ctx)
    await ctx.redis.rpush("slow:started", ctx.job_id)
    await asyncio.sleep(30)
    return x


@job(retry=Backoff(max_tries=3, base_s=0.05))
async def hang_once(ctx: JobContext, x: int) -> int:
    """Its first try notes the process and hangs (until the process is killed); a later try returns ``x * 10``."""
    await _count(ctx)
    if ctx.job_try == 1:
        await ctx.redis.rpush("hung", os.getpid())
        await asyncio.sleep(60)
    return x * 10


@job(keep_result_s=0)
async def blob(ctx: JobContext, n: int) -> str:
    """A result of ``n`` bytes that is not kept as a job result (only the workflow's state holds it)."""
    await _count(ctx)
    return "x" * n


@job
async def length(ctx: JobContext, s: str) -> int:
    await _count(ctx)
    return len(s)


@job(keep_result_s=0)
async def unkept(ctx: JobContext, x: int) -> int:
    """``x * 100``, a result not kept as a job result (only the workflow's state holds it)."""
    await _count(ctx)
    return x * 100


@job
async def too_big_an_int(ctx: JobContext, x: int) -> int:
    """An int JSON allows and orjson does not write (over 64 bits)."""
    await _count(ctx)
    return x << 70


ALL = [too_big_an_int, plus_one, add, total, text, refuse, flaky_once, slow, hang_once, blob, length, unkept]
