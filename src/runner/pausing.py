"""Pausing a queue: no worker starts a job of it until it is resumed — the drain before a deploy, a hold while a
downstream service is down.

The flag is a key in Redis (``jobs:paused:<queue>``), so it holds for every worker, stock or restarted, until
someone resumes the queue. The claim script reads it in the call that claims: a paused queue costs a worker one
claim per poll (``JOBS_POLL_DELAY_S``) and nothing else, and pausing takes effect at every worker's next claim.
Jobs already running finish; jobs can still be enqueued (they wait). Resuming wakes the blocked workers at once.
Stock arq workers do not read the flag.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from . import constants as k
from .scripts import script


def _keys(queue: str) -> list[str]:
    return [k.PAUSED_KEY_PREFIX + queue, k.IDLE_KEY_PREFIX + queue, k.WAKE_KEY_PREFIX + queue]


async def pause(redis: Redis, queue: str) -> bool:
    """Pause ``queue``; False if it already was."""
    return bool(await script(redis, "pause")(keys=_keys(queue), args=["pause", _now_ms(), k.MAX_WAKE_TOKENS]))


async def resume(redis: Redis, queue: str) -> bool:
    """Resume ``queue`` and wake its workers; False if it was not paused."""
    return bool(await script(redis, "pause")(keys=_keys(queue), args=["resume", _now_ms(), k.MAX_WAKE_TOKENS]))


async def paused_since_ms(redis: Redis, queue: str) -> int | None:
    """When ``queue`` was paused (ms since the epoch), or None if it is not."""
    raw = await redis.get(k.PAUSED_KEY_PREFIX + queue)
    return None if raw is None else int(raw)


def _now_ms() -> int:
    return int(time.time() * 1000)
