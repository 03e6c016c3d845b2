"""The group-committing finisher against a real Redis: a refused outcome is not an outage, and outcomes are
written only while the lease is the worker's."""

from __future__ import annotations

import logging

import pytest
from arq.connections import ArqRedis

from src.runner import constants as k
from src.runner.finish import Finisher, Outcome
from src.runner.outage import RedisHealth


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
