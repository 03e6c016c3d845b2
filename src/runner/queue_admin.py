"""Looking through a queue and emptying it, a page at a time: ``hasten jobs list`` and ``hasten purge`` (and the
dashboard later). Nothing here holds more than one page of ids in memory, so both work at a million jobs.

A job's state in the queue: **running** (its in-progress key exists), **queued** (due, not running), **retrying**
(due later, after a failed try: its try counter exists) or **deferred** (due later, never tried).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from . import constants as k
from .scripts import script

JobState = Literal["queued", "running", "deferred", "retrying"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "deferred", "retrying")
#: rows read per round trip
PAGE_ROWS = 500


@dataclass(slots=True)
class QueuedJob:
    job_id: str
    state: JobState
    #: what the payload names (``?`` when it cannot be read: unsigned, another codec, or gone)
    function: str
    due_ms: int
    #: tries started so far
    tries: int
    enqueued_ms: int | None


async def list_jobs(
    redis: Redis,
    loads: Callable[[bytes], Any],
    queue: str = k.default_queue_name,
    *,
    state: JobState | None = None,
    function: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> list[QueuedJob]:
    """Jobs in ``queue`` by due time, filtered by ``state`` and ``function``: the ``limit`` matches after skipping
    ``offset`` of them. ``loads`` decodes a payload (the client's codec)."""
    now_ms = int(time.time() * 1000)
    low, high = ("-inf", now_ms) if state in ("queued", "running") else (f"({now_ms}", "+inf")
    if state is None:
        low, high = "-inf", "+inf"
    found: list[QueuedJob] = []
    skip = offset
    async for page in _pages(redis, queue, low, high):
        for row in await _describe(redis, loads, page, now_ms):
            if (state is None or row.state == state) and (function is None or row.function == function):
                if skip:
                    skip -= 1
                    continue
                found.append(row)
                if len(found) >= limit:
                    return found
    return found


async def _pages(redis: Redis, queue: str, low: str | int, high: str | int) -> AsyncIterator[list[tuple[bytes, float]]]:
    start = 0
    while rows := await redis.zrangebyscore(queue, low, high, start=start, num=PAGE_ROWS, withscores=True):
        yield rows
        start += len(rows)


async def _describe(
    redis: Redis, loads: Callable[[bytes], Any], rows: list[tuple[bytes, float]], now_ms: int
) -> list[QueuedJob]:
    ids = [raw.decode() for raw, _ in rows]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.mget([k.job_key_prefix + i for i in ids])
        pipe.mget([k.in_progress_key_prefix + i for i in ids])
        pipe.mget([k.retry_key_prefix + i for i in ids])
        payloads, holders, tries = await pipe.execute()
    described = []
    for job_id, (_, score), payload, holder, tried in zip(ids, rows, payloads, holders, tries, strict=True):
        definition = _read(loads, payload)
        state: JobState
        if holder is not None:
            state = "running"
        elif score <= now_ms:
            state = "queued"
        else:
            state = "retrying" if tried is not None else "deferred"
        enqueued = definition.get("et")
        enqueued_ms = int(enqueued) if isinstance(enqueued, int | float) else None
        function = str(definition.get("f", "?"))
        described.append(QueuedJob(job_id, state, function, int(score), int(tried or 0), enqueued_ms))
    return described


def _read(loads: Callable[[bytes], Any], payload: bytes | None) -> dict[str, Any]:
    if payload is None:
        return {}
    try:
        definition = loads(payload)
    except Exception:  # a payload this codec cannot read is listed as such, not an error of the listing
        return {}
    return definition if isinstance(definition, dict) else {}


async def purge_queue(
    redis: Redis, queue: str = k.default_queue_name, progress: Callable[[int, int], None] | None = None
) -> int:
    """Delete every job of ``queue`` that is not running (queued, deferred, retrying), a page per call of
    ``scripts/purge.lua``; running jobs are left to finish. ``progress(examined, deleted)`` after each page.
    Jobs enqueued while it runs may be deleted too, or not. Returns how many were deleted."""
    purge = script(redis, "purge")
    kept = examined = deleted = 0
    while True:
        seen, removed = await purge(keys=[queue], args=[kept, PAGE_ROWS])
        if not seen:
            return deleted
        examined += seen
        deleted += removed
        kept += seen - removed
        if progress is not None:
            progress(examined, deleted)
