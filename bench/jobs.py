"""The benchmark's jobs, once for our worker (JobSpecs) and once for stock arq (plain coroutines), same names.

Completion is observable in Redis: every job INCRs a counter; the first start and the last end are stamped.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from redis.asyncio import Redis

from src.runner import NO_RETRY, Backoff, JobContext, job

COUNT = "bench:count"
STARTED = "bench:started"
FIRST = "bench:first"
LAST = "bench:last"
FIRST_CPU = "bench:first-cpu"
LAST_CPU = "bench:last-cpu"
LATENCY = "bench:latency"
SEEN = "bench:seen"
DONE = "bench:done"


def expected() -> int:
    return int(os.environ.get("BENCH_N", "0"))


async def _started(redis: Redis) -> None:
    if await redis.incr(STARTED) == 1:
        await redis.set(FIRST, time.time())


async def _finished(redis: Redis) -> None:
    if await redis.incr(COUNT) == expected():
        await redis.set(LAST, time.time())


_own: Redis | None = None


def _own_client() -> Redis:
    """The I/O body's client: one per worker process, not the worker's pool (``BENCH_REDIS_PORT``)."""
    global _own
    if _own is None:
        _own = Redis(port=int(os.environ["BENCH_REDIS_PORT"]))
    return _own


async def _noop(redis: Redis) -> None:
    # one INCR per job, as the issue asks; first/last stamps cost two extra commands in 10k. The worker's CPU
    # time is stamped too: CPU per job is steadier than jobs/s on a shared machine (one worker per drain)
    n = await redis.incr(COUNT)
    if n == 1:
        await redis.mset({FIRST: time.time(), FIRST_CPU: time.process_time()})
    if n == expected():
        await redis.mset({LAST: time.time(), LAST_CPU: time.process_time()})


async def _sleepy(redis: Redis) -> None:
    await _started(redis)
    await asyncio.sleep(0.05)
    await _finished(redis)


async def _tracked(redis: Redis, job_id: str) -> None:
    await redis.hincrby(SEEN, job_id, 1)
    await _noop(redis)


async def _stamp(redis: Redis, enqueued_at: float) -> None:
    await redis.rpush(LATENCY, time.time() - enqueued_at)


# ours ---------------------------------------------------------------------------------------------------------
@job(name="noop", retry=NO_RETRY)
async def noop(ctx: JobContext) -> None:
    await _noop(ctx.redis)


@job(name="capped", retry=NO_RETRY, max_concurrency=10_000)
async def capped(ctx: JobContext) -> None:
    """``noop`` with a concurrency limit that never binds (what a limit costs: the claim and finish keep its slots)."""
    await _noop(ctx.redis)


@job(name="paced", retry=NO_RETRY, rate_limit="1000000/s")
async def paced(ctx: JobContext) -> None:
    """``noop`` with a rate limit that never binds (the claim keeps the rate's arrival time)."""
    await _noop(ctx.redis)


@job(name="io", retry=NO_RETRY)
async def io(ctx: JobContext) -> None:
    """A body that awaits one command on a client of its own, as a job that calls a service does."""
    await _noop(_own_client())


@job(name="sleepy", retry=NO_RETRY)
async def sleepy(ctx: JobContext) -> None:
    await _sleepy(ctx.redis)


@job(name="tracked", retry=NO_RETRY)
async def tracked(ctx: JobContext) -> None:
    await _tracked(ctx.redis, ctx.job_id)


@job(name="soaked", retry=Backoff(max_tries=5, base_s=0.01))
async def soaked(ctx: JobContext) -> None:
    """``tracked`` with retries: a try a killed worker took runs again (the kill soak counts how often twice);
    ``bench:done`` counts the runs that got to their end (a run again of one of those lost its outcome)."""
    await _tracked(ctx.redis, ctx.job_id)
    await ctx.redis.hincrby(DONE, ctx.job_id, 1)


@job(name="soaked_io", retry=Backoff(max_tries=5, base_s=0.01))
async def soaked_io(ctx: JobContext, sleep_s: float) -> None:
    """``soaked`` with a body that waits on I/O for ``sleep_s`` between its two counts (the stream kill soak)."""
    await ctx.redis.hincrby(SEEN, ctx.job_id, 1)
    await asyncio.sleep(sleep_s)
    await ctx.redis.hincrby(DONE, ctx.job_id, 1)


@job(name="ends_after", retry=NO_RETRY)
async def ends_after(ctx: JobContext, seconds: float) -> float:
    """Waits, then returns when it ended (the result waiters' latency is measured from it)."""
    await asyncio.sleep(seconds)
    return time.time()


@job(name="stamp", retry=NO_RETRY)
async def stamp(ctx: JobContext, enqueued_at: float) -> None:
    await _stamp(ctx.redis, enqueued_at)


@job(name="chained", retry=NO_RETRY)
async def chained(ctx: JobContext, x: int) -> int:
    """A workflow step: counts, and hands ``x + 1`` on (the workflow workload)."""
    await ctx.redis.incr(COUNT)
    return x + 1


OURS = [noop, capped, paced, io, ends_after, sleepy, tracked, soaked, soaked_io, stamp, chained]


# stock arq ----------------------------------------------------------------------------------------------------
async def arq_noop(ctx: dict[str, Any]) -> None:
    await _noop(ctx["redis"])


async def arq_io(ctx: dict[str, Any]) -> None:
    await _noop(_own_client())


async def arq_sleepy(ctx: dict[str, Any]) -> None:
    await _sleepy(ctx["redis"])


async def arq_tracked(ctx: dict[str, Any]) -> None:
    await _tracked(ctx["redis"], ctx["job_id"])


async def arq_soaked(ctx: dict[str, Any]) -> None:
    await _tracked(ctx["redis"], ctx["job_id"])
    await ctx["redis"].hincrby(DONE, ctx["job_id"], 1)


async def arq_soaked_io(ctx: dict[str, Any], sleep_s: float) -> None:
    await ctx["redis"].hincrby(SEEN, ctx["job_id"], 1)
    await asyncio.sleep(sleep_s)
    await ctx["redis"].hincrby(DONE, ctx["job_id"], 1)


async def arq_stamp(ctx: dict[str, Any], enqueued_at: float) -> None:
    await _stamp(ctx["redis"], enqueued_at)


ARQ = {"noop": arq_noop, "io": arq_io, "sleepy": arq_sleepy, "tracked": arq_tracked, "soaked": arq_soaked,
       "soaked_io": arq_soaked_io, "stamp": arq_stamp}  # fmt: skip
