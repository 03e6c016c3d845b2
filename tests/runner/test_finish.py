"""The batched finisher against a real Redis: a failing script is not an outage."""

from __future__ import annotations

import asyncio

from arq.connections import ArqRedis

from src.runner import constants as k
from src.runner.finish import Finisher, Outcome


async def test_an_outcome_the_script_refuses_does_not_hold_back_the_others(redis: ArqRedis) -> None:
    await redis.set(k.job_key_prefix + "good", b"payload")
    await redis.zadd(k.default_queue_name, {"good": 1, "bad": 1})
    finisher = Finisher(redis, k.default_queue_name, dlq_retention_ms=60_000)
    finisher.add(Outcome(b"bad", "again", b"", "not a score"))  # type: ignore[arg-type]  # ZADD fails in Lua
    finisher.add(Outcome(b"good", "done", b"the result", 60_000, succeeded=True))
    await asyncio.wait_for(finisher.drain(), timeout=5)
    assert await redis.get(k.result_key_prefix + "good") == b"the result"
    assert not await redis.exists(k.job_key_prefix + "good")
