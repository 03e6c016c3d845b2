"""Small jobs the runner tests enqueue (the real jobs are tested in tests/jobs/)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from pydantic import BaseModel, Field

from src.runner import NO_RETRY, Backoff, JobContext, Permanent, job

calls: list[tuple[str, int]] = []


class Point(BaseModel):
    x: int
    y: int = Field(ge=0)


class Moved(BaseModel):
    point: Point
    at: datetime


@job
async def add(ctx: JobContext, a: int, b: int = 1) -> int:
    return a + b


@job(retry=NO_RETRY)
async def move(ctx: JobContext, point: Point, dx: int) -> Moved:
    return Moved(point=Point(x=point.x + dx, y=point.y), at=ctx.enqueue_time)


@job(retry=Backoff(max_tries=3, base_s=0.01, max_s=0.02))
async def flaky(ctx: JobContext, fail_times: int) -> int:
    calls.append(("flaky", ctx.job_try))
    if ctx.job_try <= fail_times:
        raise ConnectionError(f"try {ctx.job_try} failed")
    return ctx.job_try


@job(retry=Backoff(max_tries=5, base_s=0.01))
async def refuse(ctx: JobContext) -> None:
    calls.append(("refuse", ctx.job_try))
    raise Permanent("no, never")


@job(timeout_s=0.1, retry=NO_RETRY)
async def slow(ctx: JobContext, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@job(retry=NO_RETRY)
async def lies(ctx: JobContext) -> int:
    return "not a number"  # type: ignore[return-value]


@job(timeout_s=10, retry=NO_RETRY)
async def nap(ctx: JobContext, seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@job
async def echo(ctx: JobContext, text: str) -> str:
    return text


@job
async def context_of(ctx: JobContext) -> dict[str, str | int]:
    return {"job_id": ctx.job_id, "job_try": ctx.job_try, "max_tries": ctx.max_tries, "function": ctx.function}


@job(retry=NO_RETRY)
async def reports(ctx: JobContext, pause_s: float) -> None:
    await ctx.progress(0.5, {"step": "half"})
    await asyncio.sleep(pause_s)


@job(retry=NO_RETRY)
async def switchable(ctx: JobContext) -> str:
    """Fails for good while the key ``broken`` is set in Redis."""
    if await ctx.redis.get("broken"):
        raise Permanent("broken on purpose")
    return "fixed"


starts_at: list[float] = []


@job(retry=Backoff(max_tries=4, base_s=0.2, max_s=0.5, jitter=0.5))
async def backs_off(ctx: JobContext) -> int:
    """Fails three times, noting when each try started."""
    starts_at.append(time.monotonic())
    if ctx.job_try < 4:
        raise ConnectionError("not yet")
    return ctx.job_try


@job(retry=NO_RETRY)
async def timed_nap(ctx: JobContext, seconds: float) -> None:
    """Notes in the list ``runs`` when it starts and ends, for overlap tests."""
    await ctx.redis.rpush("runs", f"start {ctx.job_id} {time.time()}")
    await asyncio.sleep(seconds)
    await ctx.redis.rpush("runs", f"end {ctx.job_id} {time.time()}")


class Card(BaseModel):
    holder: str
    number: str


#: (password, card number) as each run of ``sign_in`` received them
received: list[tuple[str, str]] = []


@job(retry=NO_RETRY, redact=["password", "card.number"])
async def sign_in(ctx: JobContext, user: str, password: str, card: Card, fail: bool = False) -> str:
    received.append((password, card.number))
    if fail:
        raise Permanent("sign-in refused")
    return user


@job
async def frozen_objects(ctx: JobContext) -> int:
    """How many objects the process froze out of full collections (``heap.py``)."""
    import gc

    return gc.get_freeze_count()
