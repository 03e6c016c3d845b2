"""Limits in one process, on the real Redis: declaring them, the order held jobs keep, a slot whose holder vanished,
and what an unlimited job costs (nothing: no limit key is written)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis

from src.runner import (
    NO_RETRY,
    Codec,
    JobClient,
    JobContext,
    JobFailed,
    JobStatus,
    Permanent,
    WorkflowFailed,
    chain,
    chord,
    group,
    job,
)
from src.runner import constants as k
from src.runner.dlq import DeadLetters
from src.runner.limits import Limit, Rate, declare_limits, limit_rows, parse_rate, set_limit
from src.runner.queue_admin import find_jobs, purge_queue
from src.runner.queue_stats import queue_stats
from src.runner.worker import Worker
from src.runner.workflow_ids import step_id
from tests.waiting import wait_for
from tests.workflow_jobs import total

ORDER_KEY = "order"


@job(max_concurrency=1)
async def one_at_a_time(ctx: JobContext, n: int) -> int:
    await ctx.redis.rpush(ORDER_KEY, n)
    await asyncio.sleep(0.02)
    return ctx.job_try


@job
async def free(ctx: JobContext, n: int) -> int:
    return n


@job(max_concurrency=2)
async def two_at_a_time(ctx: JobContext, n: int) -> int:
    """Records how many of its runs were running when it started (``peaks``)."""
    await ctx.redis.rpush("peaks", await ctx.redis.incr("now_running"))
    await asyncio.sleep(0.05)
    await ctx.redis.decr("now_running")
    return n


@job(max_concurrency=1)
async def limited_gated(ctx: JobContext, name: str) -> str:
    """Records that it started, then waits for its gate (``gate:<name>``)."""
    await ctx.redis.rpush("started", name)
    await ctx.redis.blpop([f"gate:{name}"], timeout=30)
    return name


@job
async def gated(ctx: JobContext, name: str) -> str:
    await ctx.redis.rpush("started", name)
    await ctx.redis.blpop([f"gate:{name}"], timeout=30)
    return name


@job(max_concurrency=1, concurrency_key="customer")
async def per_customer(ctx: JobContext, customer: int, n: int) -> int:
    return n


def test_rates_parse_and_print() -> None:
    assert parse_rate("100/m") == Rate(100, 60_000)
    assert parse_rate("20/s") == Rate(20, 1000)
    assert parse_rate(" 5 / h ") == Rate(5, 3_600_000)
    assert parse_rate("10/30s") == Rate(10, 30_000)
    assert str(Rate(100, 60_000)) == "100/m" and str(Rate(10, 30_000)) == "10/30s"
    for bad in ("100", "100/d", "0/s", "x/s", "10/0s"):
        with pytest.raises(ValueError, match="expected '<count>/<period>'"):
            parse_rate(bad)
    assert Limit.decode(Limit(3, Rate(2, 1000)).encode()) == Limit(3, Rate(2, 1000))
    assert Limit.decode(Limit().encode()) == Limit()


def test_the_decorator_refuses_what_it_cannot_honour() -> None:
    async def fn(ctx: JobContext, customer: str) -> None: ...

    with pytest.raises(TypeError, match="concurrency_key needs a limit"):
        job(concurrency_key="customer")(fn)
    with pytest.raises(TypeError, match="concurrency_key='client' names no parameter"):
        job(max_concurrency=1, concurrency_key="client")(fn)
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        job(max_concurrency=0)(fn)
    with pytest.raises(ValueError, match="expected '<count>/<period>'"):
        job(rate_limit="100 per minute")(fn)
    spec = job(max_concurrency=2, rate_limit="1/s", concurrency_key=lambda args: args.customer.upper())(fn)
    assert spec.limit_entry({"customer": "acme"}) == "fn\nACME"
    assert job(fn).limit_entry({"customer": "acme"}) == ""


def test_a_huge_or_odd_limit_key_makes_a_bounded_bucket_of_its_own() -> None:
    async def fn(ctx: JobContext, customer: str) -> None: ...

    spec = job(max_concurrency=1, concurrency_key="customer")(fn)
    one, other = spec.limit_entry({"customer": "x" * 1_000_000}), spec.limit_entry({"customer": "x" * 999_999})
    assert len(one) < 300 and len(other) < 300 and one != other
    assert one == spec.limit_entry({"customer": "x" * 1_000_000})
    assert spec.limit_entry({"customer": "a\nb{c}"}) == "fn\na\nb{c}"  # short keys are kept as they are


async def test_a_limit_changed_at_run_time_outlives_worker_starts(redis: ArqRedis) -> None:
    queue = k.default_queue_name
    await declare_limits(redis, queue, {"f": Limit(5), "g": Limit(1)})
    await set_limit(redis, queue, "f", Limit(8), lease_ms=1000)
    await declare_limits(redis, queue, {"f": Limit(6), "g": Limit(2)})  # a restart with new defaults
    rows = {row.function: row for row in await limit_rows(redis, queue)}
    assert rows["f"].limit == Limit(8) and rows["f"].declared == Limit(6)  # changed at run time: kept
    assert rows["g"].limit == Limit(2) and rows["g"].declared is None  # never changed: the new default
    with pytest.raises(ValueError, match="function 'h' has no limits"):
        await set_limit(redis, queue, "h", Limit(1), lease_ms=1000)


async def test_held_jobs_keep_their_order_and_their_tries(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    # due one millisecond apart, in the past: the queue's order is n's (jobs due in the same millisecond are ordered
    # by id, in the queue as among held jobs)
    base = datetime.now(UTC) - timedelta(seconds=1)
    timed = [one_at_a_time.options(defer_until=base + timedelta(milliseconds=n)) for n in range(8)]
    handles = [await client.enqueue(spec, n) for n, spec in reversed(list(enumerate(timed)))][::-1]
    running_worker([one_at_a_time], max_jobs=10)
    await wait_for(lambda: redis.llen(ORDER_KEY), 10)
    # the others are held: out of every claim's reach, and deferred to arq's eyes
    assert await handles[-1].status() is JobStatus.deferred
    assert [await h.result(timeout_s=10) for h in handles] == [1] * 8  # each ran on its first try
    assert [int(n) for n in await redis.lrange(ORDER_KEY, 0, -1)] == list(range(8))
    assert not await redis.keys(k.LIMIT_OF_KEY_PREFIX + "*")  # side entries go with their jobs


async def test_a_slot_whose_job_vanished_comes_back_at_a_sweep(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """A slot held by a job whose lease ended with nobody to finish it (a worker killed, the job then gone): the
    claim's periodic sweep gives it back and promotes the jobs held behind it."""
    queue = client.queue_name
    running_worker([one_at_a_time], lease_s=0.6)
    await wait_for(lambda: redis.hexists(k.LIMITS_KEY_PREFIX + queue, "one_at_a_time"), 10)
    ghost = "ghost"
    now_ms = int(time.time() * 1000)
    await redis.set(k.in_progress_key_prefix + ghost, "dead-worker", px=300)
    await redis.zadd(f"{k.LIMIT_RUNNING_KEY_PREFIX}{queue}\none_at_a_time", {ghost: now_ms + 300})
    await redis.sadd(k.LIMIT_BUCKETS_KEY_PREFIX + queue, "one_at_a_time")
    started = time.monotonic()
    handle = await client.enqueue(one_at_a_time, 1)
    await wait_for(lambda: redis.zcard(f"{k.LIMIT_HELD_KEY_PREFIX}{queue}\none_at_a_time"), 5, message="held")
    assert await handle.result(timeout_s=10) == 1
    assert time.monotonic() - started < 2.0  # the ghost's 0.3 s, then a sweep (every third of a lease)


async def test_an_unlimited_job_writes_no_limit_keys(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([free, one_at_a_time])  # a queue with limits: the claim and finish read them
    handles = [await client.enqueue(free, n) for n in range(20)]
    assert [await h.result(timeout_s=10) for h in handles] == list(range(20))
    keys = {key.decode() for key in await redis.keys("jobs:limit*")}
    assert keys == {k.LIMITS_KEY_PREFIX + client.queue_name}


@job(max_concurrency=1, retry=NO_RETRY)
async def gate(ctx: JobContext, fail: bool, hold_s: float) -> str:
    if fail and not await ctx.redis.exists("fixed"):
        raise Permanent("broken")
    await asyncio.sleep(hold_s)
    return "ok"


async def test_a_requeued_dead_job_keeps_its_limit(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([gate])
    dead = await client.enqueue(gate, True, 0)
    with pytest.raises(JobFailed):
        await dead.result(timeout_s=10)
    assert await redis.exists(k.LIMIT_OF_KEY_PREFIX + dead.job_id)  # kept with the dead letter
    await redis.set("fixed", 1)
    blocker = await client.enqueue(gate, False, 0.5)
    await wait_for(lambda: redis.exists(k.in_progress_key_prefix + blocker.job_id), 5)
    assert await DeadLetters(redis, client.queue_name).requeue(dead.job_id)
    held = f"{k.LIMIT_HELD_KEY_PREFIX}{client.queue_name}\ngate"
    await wait_for(lambda: redis.zscore(held, dead.job_id), 5, message="the requeued job held behind the blocker")
    assert await dead.result(timeout_s=10) == "ok"
    assert not await redis.exists(k.LIMIT_OF_KEY_PREFIX + dead.job_id)


async def test_held_jobs_are_listed_as_held_with_their_due_time(
    redis: ArqRedis, client: JobClient, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    running_worker([gate])
    before_ms = int(time.time() * 1000)
    handles = [await client.enqueue(gate, False, 30) for _ in range(4)]
    running = await wait_for(lambda: _running_one(redis, [h.job_id for h in handles]), 5, message="one running")
    page = await find_jobs(redis, codec.loads, client.queue_name, state="held")
    assert sorted(row.job_id for row in page.jobs) == sorted(h.job_id for h in handles if h.job_id != running)
    assert all(before_ms <= row.due_ms <= time.time() * 1000 for row in page.jobs)  # not the far-future score
    every = await find_jobs(redis, codec.loads, client.queue_name)
    assert [row.state for row in every.jobs] == ["running", "held", "held", "held"]
    assert not (await find_jobs(redis, codec.loads, client.queue_name, state="deferred")).jobs
    stats = await queue_stats(redis, client.queue_name)
    assert (stats.held, stats.deferred, stats.running + stats.queued) == (3, 0, 1)


async def _running_one(redis: ArqRedis, ids: list[str]) -> str | None:
    """The one of ``ids`` that runs, once only one does."""
    running = [i for i in ids if await redis.exists(k.in_progress_key_prefix + i)]
    return running[0] if len(running) == 1 else None


async def _hold_three(redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]) -> list[str]:
    """One gate() running for a while and three held behind it; the held ones' ids, in their order."""
    running_worker([gate])
    handles = [await client.enqueue(gate, False, 1.0) for _ in range(4)]
    running = await wait_for(lambda: _running_one(redis, [h.job_id for h in handles]), 5, message="one running")
    held = f"{k.LIMIT_HELD_KEY_PREFIX}{client.queue_name}\ngate"
    await wait_for(lambda: _equals(redis.zcard(held), 3), 5, message="three held")
    ids = [i.decode() for i in await redis.zrange(held, 0, -1)]
    assert running not in ids
    return ids


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def _held_row(redis: ArqRedis, queue: str) -> tuple[int, int]:
    [row] = [r for r in await limit_rows(redis, queue) if r.function == "gate" and r.key is None]
    return row.running, row.held


async def test_a_held_job_whose_definition_expired_leaves_no_trace(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """A held job whose job key expired is dropped when its turn comes: not left in the queue at the held score for
    ever (counted as held by every status), nor in its bucket."""
    held_ids = await _hold_three(redis, client, running_worker)
    await redis.delete(k.job_key_prefix + held_ids[0])  # as its ttl would
    queue = client.queue_name
    # its turn comes when the running one ends: it is dropped, and the next one runs
    await wait_for(lambda: redis.exists(k.in_progress_key_prefix + held_ids[1]), 10, message="the next one running")
    assert await redis.zscore(queue, held_ids[0]) is None
    assert not await redis.exists(k.LIMIT_OF_KEY_PREFIX + held_ids[0])


async def test_an_aborted_held_job_leaves_its_bucket_at_once(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    held_ids = await _hold_three(redis, client, running_worker)
    assert await client.abort(held_ids[1], 5.0, client.queue_name)
    assert await _held_row(redis, client.queue_name) == (1, 2)  # not still counted as held
    assert not await redis.exists(k.LIMIT_OF_KEY_PREFIX + held_ids[1])


async def test_a_purge_of_held_jobs_empties_their_bucket(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    held_ids = await _hold_three(redis, client, running_worker)
    assert await purge_queue(redis, client.queue_name) == 3
    assert await _held_row(redis, client.queue_name) == (1, 0)
    assert not any([await redis.exists(k.LIMIT_OF_KEY_PREFIX + i) for i in held_ids])
    stats = await queue_stats(redis, client.queue_name)
    assert stats.held == 0


async def test_a_chord_of_a_limited_function_keeps_to_its_limit(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([two_at_a_time, total], max_jobs=20)
    handle = await client.enqueue_workflow(chord(group([two_at_a_time.s(n) for n in range(10)]), total.s()))
    assert await handle.result(timeout_s=15) == sum(range(10))
    peaks = [int(p) for p in await redis.lrange("peaks", 0, -1)]
    assert len(peaks) == 10 and max(peaks) == 2
    assert not await redis.keys(k.LIMIT_OF_KEY_PREFIX + "*")  # side entries go with their steps


async def test_a_step_keyed_by_its_input_is_refused(client: JobClient) -> None:
    with pytest.raises(ValueError, match="taken from 'customer', which is the result of the steps before it"):
        await client.enqueue_workflow(chain(free.s(1), per_customer.s(n=2)))
    keyed = job(max_concurrency=1, concurrency_key=lambda args: args.n, name="keyed")(per_customer.fn)
    with pytest.raises(ValueError, match="taken by a function of its arguments"):
        await client.enqueue_workflow(chain(free.s(1), keyed.s(n=2)))
    await client.enqueue_workflow(chain(per_customer.s(1, 2), free.s()))  # keyed by its own argument: fine


async def test_a_held_job_with_a_priority_starts_next_when_its_slot_frees(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """A busy worker (two slots), 40 plain jobs queued: an urgent job of a limited function, held while the limit's
    one slot is taken, keeps its head start when that slot frees (promoted at its place, not at the queue's tail)."""

    async def started() -> list[str]:
        return [x.decode() for x in await redis.lrange("started", 0, -1)]

    async def started_are(n: int) -> bool:
        return len(await started()) == n

    running_worker([limited_gated, gated], max_jobs=2)
    first = await client.enqueue(limited_gated, "first")
    await wait_for(lambda: started_are(1), 5)
    plain = [await client.enqueue(gated, f"plain-{n}") for n in range(40)]
    await wait_for(lambda: started_are(2), 5)  # both slots busy
    urgent = await client.enqueue(limited_gated.options(priority=5), "urgent")
    await redis.rpush("gate:plain-0", 1)  # a slot frees: the claim finds the urgent job first, and holds it
    held = f"{k.LIMIT_HELD_KEY_PREFIX}{client.queue_name}\nlimited_gated"
    await wait_for(lambda: redis.zscore(held, urgent.job_id), 5, message="the urgent job held")
    await wait_for(lambda: started_are(3), 5)  # plain-1 took the slot
    await redis.rpush("gate:first", 1)  # the limit's slot frees, and the worker's
    assert await first.result(timeout_s=5) == "first"
    await wait_for(lambda: started_are(4), 5)
    assert (await started())[3] == "urgent"
    await redis.rpush("gate:urgent", 1)
    for n in range(1, 40):
        await redis.rpush(f"gate:plain-{n}", 1)
    assert await urgent.result(timeout_s=10) == "urgent"
    assert [await h.result(timeout_s=10) for h in plain] == [f"plain-{n}" for n in range(40)]


async def test_a_cancelled_workflow_step_leaves_its_limit_bucket(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([limited_gated, gate], max_jobs=5)
    handle = await client.enqueue_workflow(group([limited_gated.s("a"), limited_gated.s("b"), gate.s(True, 0)]))
    b_id = step_id(handle.workflow_id, 1)
    with pytest.raises(WorkflowFailed):  # gate() fails for good: the member still queued is cancelled
        await handle.result(timeout_s=10)
    await redis.rpush("gate:a", 1)
    assert (await handle.info()).steps[1].status in ("cancelled", "aborted")
    held = f"{k.LIMIT_HELD_KEY_PREFIX}{client.queue_name}\nlimited_gated"
    assert await redis.zcard(held) == 0 and not await redis.exists(k.LIMIT_OF_KEY_PREFIX + b_id)


async def test_a_dead_slot_among_many_busy_keys_comes_back_at_the_next_sweep(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """Per key, 800 keys with a live run each and one whose run's worker died, with a job waiting behind it: the sweep
    looks at the buckets where jobs wait, so it finds that one at once (not by luck among the 801)."""
    queue = client.queue_name
    running_worker([per_customer], lease_s=0.6)
    await wait_for(lambda: redis.hexists(k.LIMITS_KEY_PREFIX + queue, "per_customer"), 10)
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(800):
            pipe.set(k.in_progress_key_prefix + f"busy{n}", "live-worker", px=60_000)
            pipe.zadd(f"{k.LIMIT_RUNNING_KEY_PREFIX}{queue}\nper_customer\n{n}", {f"busy{n}": now_ms + 60_000})
            pipe.sadd(k.LIMIT_BUCKETS_KEY_PREFIX + queue, f"per_customer\n{n}")
        pipe.set(k.in_progress_key_prefix + "ghost", "dead-worker", px=300)
        pipe.zadd(f"{k.LIMIT_RUNNING_KEY_PREFIX}{queue}\nper_customer\n1000", {"ghost": now_ms + 300})
        pipe.sadd(k.LIMIT_BUCKETS_KEY_PREFIX + queue, "per_customer\n1000")
        await pipe.execute()
    handle = await client.enqueue(per_customer, 1000, 7)
    await wait_for(lambda: redis.zcard(f"{k.LIMIT_HELD_KEY_PREFIX}{queue}\nper_customer\n1000"), 5, message="held")
    started = time.monotonic()
    assert await handle.result(timeout_s=10) == 7
    # the ghost's 0.3 s, then a sweep (every 0.2 s here) with slack; picked by luck, 16 of 801 a sweep, it took 2-6 s
    assert time.monotonic() - started < 1.5


async def test_a_limited_job_with_a_priority_its_limit_allows_starts_next_in_a_busy_worker(
    redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """Its limit has room: the claim after the next free slot finds it first (the rewind marker), behind 30 plain
    jobs and every worker's claim cursor."""
    running_worker([limited_gated, gated], max_jobs=1)
    plain = [await client.enqueue(gated, f"plain-{n}") for n in range(30)]
    await wait_for(lambda: redis.llen("started"), 5)
    urgent = await client.enqueue(limited_gated.options(priority=1), "urgent")
    await redis.rpush("gate:plain-0", 1)
    await wait_for(lambda: _equals(redis.llen("started"), 2), 5)
    assert (await redis.lindex("started", 1)) == b"urgent"
    await redis.rpush("gate:urgent", 1)
    for n in range(1, 30):
        await redis.rpush(f"gate:plain-{n}", 1)
    assert await urgent.result(timeout_s=10) == "urgent"
    assert [await h.result(timeout_s=10) for h in plain] == [f"plain-{n}" for n in range(30)]
