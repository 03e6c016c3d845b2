"""The group-committing finisher against a real Redis: a refused outcome is not an outage, and outcomes are
written only while the lease is the worker's."""

from __future__ import annotations

import asyncio
import logging

import pytest
from arq.connections import ArqRedis
from redis import Redis as SyncRedis

from src.runner import constants as k
from src.runner.finish import Finisher, Outcome
from src.runner.lean_pool import make_lean
from src.runner.outage import RedisHealth
from src.runner.redis_server import RedisServer
from src.runner.sockets import bound


async def _running(redis: ArqRedis, job_id: str, owner: bytes = b"w1") -> None:
    await redis.set(k.job_key_prefix + job_id, b"payload")
    await redis.zadd(k.default_queue_name, {job_id: 1})
    await redis.set(k.in_progress_key_prefix + job_id, owner, px=60_000)


async def test_an_outcome_the_script_refuses_does_not_hold_back_the_others(
    redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    await _running(redis, "good")
    await _running(redis, "bad")
    health = RedisHealth()
    finisher = Finisher(redis, k.default_queue_name, "w1", dlq_retention_ms=60_000, health=health)
    finisher.add(Outcome(b"bad", "again", b"", "not a score"))  # type: ignore[arg-type]  # ZADD fails in Lua
    finisher.add(Outcome(b"good", "done", b"the result", 60_000, succeeded=True))
    assert await finisher.drain(timeout_s=1.0) == 1  # the refused one is kept, and retried
    assert await redis.get(k.result_key_prefix + "good") == b"the result"
    assert not await redis.exists(k.job_key_prefix + "good")
    assert health.refusing == {"writing job outcomes"}
    assert [r.levelno for r in caplog.records if "refused" in r.getMessage()][:1] == [logging.ERROR]


async def test_an_outcome_is_not_written_over_another_owners_lease(redis: ArqRedis) -> None:
    await _running(redis, "taken", owner=b"w2")
    await _running(redis, "mine")
    finisher = Finisher(redis, k.default_queue_name, "w1", dlq_retention_ms=60_000)
    finisher.add(Outcome(b"taken", "done", b"stale result", 60_000, succeeded=True))
    finisher.add(Outcome(b"mine", "done", b"fresh result", 60_000, succeeded=True))
    assert await finisher.drain(timeout_s=5) == 0
    assert await redis.get(k.in_progress_key_prefix + "taken") == b"w2"
    assert await redis.exists(k.job_key_prefix + "taken")
    assert not await redis.exists(k.result_key_prefix + "taken")
    assert await redis.get(k.result_key_prefix + "mine") == b"fresh result"


async def test_a_result_is_recorded_once(redis: ArqRedis) -> None:
    """Lease gone and the job finished by its new owner: a late outcome changes nothing."""
    await redis.set(k.result_key_prefix + "done-elsewhere", b"first")
    finisher = Finisher(redis, k.default_queue_name, "w1", dlq_retention_ms=60_000)
    finisher.add(Outcome(b"done-elsewhere", "done", b"second", 60_000, succeeded=True))
    assert await finisher.drain(timeout_s=5) == 0
    assert await redis.get(k.result_key_prefix + "done-elsewhere") == b"first"


async def _pause_writes(redis: ArqRedis, ms: int) -> None:
    """Redis holds every write (scripts included) for ``ms``: a write sent now stays in flight that long."""
    await redis.client_pause(ms, all=False)


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_an_outcome_does_not_wait_for_the_write_in_flight(redis: ArqRedis) -> None:
    """What finishes while a write is in flight is sent at once beside it: the window in which a finished job's
    outcome exists only in this process is one turn of the loop, not one write."""
    await _running(redis, "first")
    await _running(redis, "second")
    finisher = Finisher(redis, k.default_queue_name, "w1", dlq_retention_ms=60_000)
    await _pause_writes(redis, 500)
    finisher.add(Outcome(b"first", "done", b"1", 60_000, succeeded=True))
    await _turns()
    finisher.add(Outcome(b"second", "done", b"2", 60_000, succeeded=True))
    await _turns()
    assert len(finisher) == 0, "the second outcome waited for the first write"
    assert not await redis.exists(k.result_key_prefix + "first")  # both writes are still held by Redis
    assert await finisher.drain(timeout_s=5) == 0
    assert await redis.mget(k.result_key_prefix + "first", k.result_key_prefix + "second") == [b"1", b"2"]


async def test_two_outcomes_of_one_job_are_never_in_flight_together(redis: ArqRedis) -> None:
    """A job put back, claimed and finished again before the first write returned: the second outcome waits for
    the first, so they cannot land swapped (the job would be left queued after it was done)."""
    await _running(redis, "twice")
    finisher = Finisher(redis, k.default_queue_name, "w1", dlq_retention_ms=60_000)
    await _pause_writes(redis, 300)
    finisher.add(Outcome(b"twice", "back", b"", 1))
    await _turns()
    finisher.add(Outcome(b"twice", "done", b"result", 60_000, succeeded=True))
    await _turns()
    assert len(finisher) == 1, "the job's second outcome went out while its first was in flight"
    assert await finisher.drain(timeout_s=5) == 0
    assert await redis.get(k.result_key_prefix + "twice") == b"result"
    assert not await redis.zscore(k.default_queue_name, "twice")


async def test_outcomes_are_counted_per_minute_by_kind(redis: ArqRedis) -> None:
    for job_id in ("ok", "retry", "dead", "aborted", "back"):
        await _running(redis, job_id)
    finisher = Finisher(redis, k.default_queue_name, "w1", dlq_retention_ms=60_000)
    finisher.add(Outcome(b"ok", "done", b"", 0, succeeded=True))
    finisher.add(Outcome(b"retry", "again", b'{"try": 1}', 5))
    finisher.add(Outcome(b"dead", "done", b"", 0, dead=b"{}"))
    finisher.add(Outcome(b"aborted", "done", b"", 0))
    finisher.add(Outcome(b"back", "back", b"", 1))  # a try given back by a shutdown
    assert await finisher.drain(timeout_s=5) == 0
    keys = [key async for key in redis.scan_iter(match=f"{k.OUTCOMES_KEY_PREFIX}{k.default_queue_name}:*")]
    counts: dict[bytes, int] = {}
    for key in keys:
        for kind, n in (await redis.hgetall(key)).items():
            counts[kind] = counts.get(kind, 0) + int(n)
        assert 0 < await redis.pttl(key) <= k.OUTCOMES_TTL_MS
    assert counts == {b"complete": 1, b"failed": 1, b"dead": 1, b"aborted": 1, b"retried": 1}


async def test_a_jobs_own_write_leaves_before_its_task_first_waits(redis: ArqRedis, redis_server: RedisServer) -> None:
    """The duplicate window: a job's outcome is sent in the step its function returned in. Run ``write()`` up to
    its first wait by hand and, with this event loop stopped there, ask Redis from a blocking client: written."""
    make_lean(redis)  # the worker's pool: a checkout that does not wait, and a socket timeout on every command
    bound(redis)
    await _running(redis, "warm-up")
    await _running(redis, "eager")
    finisher = Finisher(redis, k.default_queue_name, "w1", dlq_retention_ms=60_000)
    await finisher.write(Outcome(b"warm-up", "done", b"", 0, succeeded=True))  # the script loaded, a connection idle
    step = finisher.write(Outcome(b"eager", "done", b"result", 60_000, succeeded=True))
    waiting_on = step.send(None)  # up to the first wait: the reply
    assert waiting_on is not None
    with SyncRedis.from_url(redis_server.url) as blocking:
        written = blocking.get(k.result_key_prefix + "eager")
    assert written == b"result", "the outcome had not left the process when its task first waited"
    step.close()  # the reply is never read: this coroutine stops here
    assert await redis.get(k.result_key_prefix + "eager") == b"result"
