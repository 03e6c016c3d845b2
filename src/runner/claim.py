"""Batched claim: one Lua call takes up to *k* due jobs for this worker (see ``scripts/claim.lua``).

It also takes the jobs that ``enqueue.lua`` handed to this worker while it was registered as idle, and
registers the worker as idle when the queue has nothing more due for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from . import constants as k
from .scripts import script

#: rows one claim may examine; running jobs it skips count too
_SCAN_ROWS_MIN = 64
#: the cursor starts again from the head of the queue this often, to find jobs whose in-progress key expired
_CURSOR_RESET_S = 1.0


@dataclass(slots=True)
class Claimed:
    """A job this worker now owns: its in-progress key is set and its try counter bumped."""

    raw_id: bytes
    score_ms: int
    payload: bytes
    job_try: int
    #: an abort was requested before the job started
    aborted: bool

    @property
    def job_id(self) -> str:
        return self.raw_id.decode(errors="backslashreplace")

    @classmethod
    def unpack(cls, packed: bytes) -> Claimed:
        """A job handed over by ``enqueue.lua``: ``<len(id)>:<id><score>:<try>:<payload>``."""
        length, _, rest = packed.partition(b":")
        raw_id, rest = rest[: int(length)], rest[int(length) :]
        score, _, rest = rest.partition(b":")
        job_try, _, payload = rest.partition(b":")
        return cls(raw_id, int(score), payload, int(job_try), False)


@dataclass(slots=True)
class ClaimBatch:
    jobs: list[Claimed]
    #: the scan stopped early: more due jobs may follow right away
    more: bool
    #: when the next deferred job is due (ms), if any
    next_due_ms: int | None


class Claimer:
    """Claims due jobs from one queue, keeping a cursor past the jobs that are already running."""

    def __init__(self, redis: Redis, queue_name: str, worker_id: str, in_progress_ms: int, idle_ttl_ms: int) -> None:
        self._script = script(redis, "claim")
        self._keys = [queue_name, k.IDLE_KEY_PREFIX + queue_name, k.WORKER_LIST_PREFIX + worker_id]
        self._in_progress_ms = in_progress_ms
        self._idle_member = f"{worker_id}|{in_progress_ms}"
        self._idle_ttl_ms = idle_ttl_ms
        self._cursor: tuple[bytes, bytes] = (b"", b"-inf")
        self._cursor_set_at = 0.0

    def reset(self) -> None:
        self._cursor = (b"", b"-inf")

    async def claim(self, limit: int) -> ClaimBatch:
        now = time.monotonic()
        if now - self._cursor_set_at > _CURSOR_RESET_S:
            self.reset()
            self._cursor_set_at = now
        member, score = self._cursor
        scan = max(limit * 2, _SCAN_ROWS_MIN)
        args: list[bytes | str | int] = [
            int(time.time() * 1000), limit, self._in_progress_ms, member, score, scan, self._idle_member,
            self._idle_ttl_ms,
        ]  # fmt: skip
        rows, last_member, last_score, more, next_due, handed = await self._script(keys=self._keys, args=args)
        self._cursor = (last_member, last_score)
        jobs = [Claimed.unpack(packed) for packed in handed]
        jobs += [
            Claimed(rows[i], int(float(rows[i + 1])), rows[i + 2], int(rows[i + 3]), bool(rows[i + 4]))
            for i in range(0, len(rows), 5)
        ]
        return ClaimBatch(jobs, bool(more), None if next_due is None else int(float(next_due)))

    async def unregister(self, redis: Redis) -> list[Claimed]:
        """Stop being handed jobs; returns those handed over but not yet taken (they must be given back)."""
        async with redis.pipeline(transaction=True) as tx:
            tx.zrem(self._keys[1], self._idle_member)
            tx.lrange(self._keys[2], 0, -1)
            tx.delete(self._keys[2])
            _, leftovers, _ = await tx.execute()
        return [Claimed.unpack(packed) for packed in leftovers]
