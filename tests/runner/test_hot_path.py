"""The push-based hot path: wake-ups instead of polling, idle hand-off, batched claim, no duplicates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis
from arq.worker import Worker as ArqWorker

from src.runner import NO_RETRY, Codec, JobClient, JobContext, job
from src.runner import constants as k
from src.runner.claim import ClaimBatch
from src.runner.worker import Worker
from tests.conftest import TEST_POLL_DELAY_S
from tests.sample_jobs import add
from tests.waiting import wait_for

#: a fallback poll so long that a test passing quickly proves the worker was woken, not polling
NO_POLL = {"poll_delay": 30}


@job(name="count_run", retry=NO_RETRY)
async def count_run(ctx: JobContext, pause_s: float = 0) -> None:
    await ctx.redis.hincrby("runs", ctx.job_id, 1)
    await asyncio.sleep(pause_s)


async def _registered_idle(redis: ArqRedis) -> list[str]:
    """Until a worker registered as idle (it is blocked on its lists); the registered worker ids."""

    async def idle() -> list[str]:
        return [m.decode().split("|")[0] for m in await redis.zrange(k.IDLE_KEY_PREFIX + k.default_queue_name, 0, -1)]

    return await wait_for(idle, message="a worker registered as idle")


async def test_enqueue_wakes_an_idle_worker(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker([add], **NO_POLL)
    await _registered_idle(redis)
    for i in range(5):
        assert await (await client.enqueue(add, i)).result(timeout_s=5) == i + 1


async def test_deferred_job_starts_when_due_not_at_the_next_poll(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([add], **NO_POLL)
    due = datetime.now(UTC) + timedelta(milliseconds=300)
    handle = await client.enqueue(add.options(defer_until=due), 1)
    assert await handle.result(timeout_s=5) == 2
    info = await handle.info()
    assert info.start_time is not None
    late_s = (info.start_time - due).total_seconds()
    assert -0.002 <= late_s < 1.0  # not before its time, and long before a 30 s poll


async def test_retry_is_picked_up_without_a_poll(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    from tests.sample_jobs import flaky

    running_worker([flaky], **NO_POLL)
    assert await (await client.enqueue(flaky, 2)).result(timeout_s=5) == 3


async def test_enqueue_many(client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]) -> None:
    handles = await client.enqueue_many([add.call(i) for i in range(250)] + [add.options(job_id="x").call(0)])
    again = await client.enqueue_many([add.options(job_id="x").call(1)])
    assert all(h.enqueued for h in handles) and not again[0].enqueued
    assert await redis.zcard(k.default_queue_name) == 251
    running_worker([add])
    results = await asyncio.gather(*(h.result(timeout_s=10) for h in handles))
    assert results == [i + 1 for i in range(250)] + [1]


async def test_idle_worker_is_handed_the_job(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    worker = running_worker([add], **NO_POLL)
    assert await _registered_idle(redis) == [worker.worker_id]
    handle = await client.enqueue(add, 1)
    # the enqueue claimed it for the worker: no wake-up token was needed
    assert await redis.llen(k.WAKE_KEY_PREFIX + k.default_queue_name) == 0
    assert await handle.result(timeout_s=5) == 2


async def test_job_handed_to_a_dead_idle_worker_runs_elsewhere(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    """The window where a worker dies right after registering as idle: its job waits out its in-progress key."""
    idle_key = k.IDLE_KEY_PREFIX + k.default_queue_name
    await redis.zadd(idle_key, {"ghost|300": time.time() * 1000 + 60_000})
    handle = await client.enqueue(add, 1)
    assert await redis.llen(k.WORKER_LIST_PREFIX + "ghost") == 1
    # the hand-off is a short lease on the job, and the list lives no longer
    assert await redis.get(k.in_progress_key_prefix + handle.job_id) == b"ghost"
    assert 0 < await redis.pttl(k.in_progress_key_prefix + handle.job_id) <= 300
    assert 0 < await redis.pttl(k.WORKER_LIST_PREFIX + "ghost") <= 300
    running_worker([add], poll_delay=TEST_POLL_DELAY_S)
    assert await handle.result(timeout_s=5) == 2


@job(name="sleeper", retry=NO_RETRY)
async def sleeper(ctx: JobContext, seconds: float) -> None:
    await asyncio.sleep(seconds)


async def test_an_idle_workers_wake_up_does_not_rescan_every_running_job(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    """With many long jobs running elsewhere, waking an idle worker costs a claim or two, not a scan of them all."""
    busy = running_worker([sleeper], max_jobs=2000)
    await client.enqueue_many([sleeper.call(30) for _ in range(2000)])
    for _ in range(500):
        if len(busy.tasks) == 2000:
            break
        await asyncio.sleep(0.02)
    idle = running_worker([sleeper], poll_delay=30)

    async def registered_idle() -> bool:  # its first claims scanned the queue once; now it blocks
        members = await redis.zrange(k.IDLE_KEY_PREFIX + k.default_queue_name, 0, -1)
        return any(m.decode().startswith(idle.worker_id) for m in members)

    await wait_for(registered_idle, message="the second worker idle")
    calls = 0
    claimer = idle._claimer
    assert claimer is not None
    claim = claimer.claim

    async def counting(limit: int, skip: list[bytes] | None = None) -> ClaimBatch:
        nonlocal calls
        calls += 1
        return await (claim(limit) if skip is None else claim(limit, skip))

    claimer.claim = counting  # type: ignore[method-assign]
    started = time.monotonic()
    wakes = 10
    for _ in range(wakes):  # each deferred enqueue pushes a token that wakes the idle worker
        await client.enqueue(sleeper.options(defer_by=600), 0)
        await asyncio.sleep(0.02)
    # A scan of the 2000 running jobs takes 2000 / 64 + 1 = 33 claims. The periodic rescan for expired leases
    # (every 2 s with the default lease) may fall in once per 2 s that passed, and once more at the edges; a
    # wake-up itself costs a claim or two. (Before: each wake-up rescanned: 210 claims for these 10.)
    rescans = 2 + int((time.monotonic() - started) / 2.0)
    assert calls < wakes * 3 + 33 * rescans, (calls, rescans)


async def test_closing_worker_gives_back_jobs_handed_to_it(
    client: JobClient, redis: ArqRedis, make_worker: Callable[..., Worker], running_worker: Callable[..., Worker]
) -> None:
    stopping = make_worker([add], **NO_POLL)
    task = asyncio.create_task(stopping.async_run())
    idle_key = k.IDLE_KEY_PREFIX + k.default_queue_name
    await _registered_idle(redis)
    task.cancel()  # the loop stops; the registration and the own list are what close() must clean up
    # let Redis drop the cancelled blocking pop's connection first: a hand-off racing an immediate stop can
    # land in that pop and then waits for its lease (the graceful path unregisters before it stops)
    await wait_for(_nobody_blocked(redis), message="no client blocked in Redis")
    handle = await client.enqueue(add, 5)  # handed to the stopping worker, never started
    await stopping.close()
    assert await redis.zcard(idle_key) == 0
    assert not await redis.exists(k.in_progress_key_prefix + handle.job_id)
    running_worker([add], **NO_POLL)
    await client.enqueue(add, 0)  # wakes the new worker; the given-back job is due too
    assert await handle.result(timeout_s=5) == 6


async def test_workers_of_ours_never_run_a_job_twice(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    for _ in range(3):
        running_worker([count_run], max_jobs=20)
    await client.enqueue_many([count_run.call() for _ in range(1500)])
    await _wait_runs(redis, 1500)
    assert {int(v) for v in await redis.hvals("runs")} == {1}


async def test_mixed_fleet_with_stock_arq_runs_each_job_once(
    client: JobClient, redis: ArqRedis, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    """Stock arq and our workers drain one queue, each job exactly once. Ours is push-based and claims faster,
    so the stock worker would rarely win a claim on a loaded machine: it starts alone on a first batch, and ours
    joins once the stock worker is busy with it; the second batch arrives while both run."""
    stock = ArqWorker(
        [count_run.arq_function()], redis_pool=redis, poll_delay=TEST_POLL_DELAY_S, handle_signals=False,
        max_jobs=20, job_serializer=codec.dumps, job_deserializer=codec.loads,
    )  # fmt: skip
    stock_task = asyncio.create_task(stock.async_run())
    try:
        await client.enqueue_many([count_run.call(0.005) for _ in range(400)])
        await wait_for(lambda: stock.jobs_complete >= 20, message="the stock worker ran jobs")
        ours = running_worker([count_run], max_jobs=5)
        await client.enqueue_many([count_run.call(0.005) for _ in range(600)])
        await _wait_runs(redis, 1000)
    finally:
        stock_task.cancel()
        await asyncio.gather(stock_task, return_exceptions=True)
    assert {int(v) for v in await redis.hvals("runs")} == {1}
    assert stock.jobs_complete >= 20 and ours.jobs_complete > 0  # both kinds of worker took part


def _nobody_blocked(redis: ArqRedis) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        clients = await redis.client_list()
        return not any("b" in c["flags"] for c in clients)

    return check


async def _wait_runs(redis: ArqRedis, n: int) -> None:
    async def all_ran() -> bool:
        return int(await redis.hlen("runs")) >= n and not await redis.zcard(k.default_queue_name)

    await wait_for(all_ran, 30, interval_s=0.02, message=lambda: f"all {n} jobs ran")
