"""Batched claim: one Lua call takes up to *k* due jobs for this worker (see ``scripts/claim.lua``).

It also takes the jobs that ``enqueue.lua`` handed to this worker while it was registered as idle, and
registers the worker as idle when the queue has nothing more due for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from . import constants as k
from .scripts import script

#: rows one claim may examine; running jobs it skips count too
_SCAN_ROWS_MIN = 64
#: the cursor starts again from the head of the queue at most this often, to find jobs whose lease expired
#: (a crashed worker's); with a short lease, every third of it. Never before each idle wait: with many long
#: jobs running, each rescan examines all of them.
_CURSOR_RESET_MAX_S = 2.0


@dataclass(slots=True)
class Claimed:
    """A job this worker now owns: its in-progress key is set and its try counter bumped."""

    raw_id: bytes
    score_ms: int
    payload: bytes
    job_try: int
    #: an abort was requested before the job started
    aborted: bool
    #: ``raw_id`` as text, decoded once: the hot path reads it about ten times per job
    job_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.job_id = self.raw_id.decode(errors="backslashreplace")

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

    def __init__(
        self, redis: Redis, queue_name: str, worker_id: str, lease_ms: int, idle_ttl_ms: int,
        abort_set: str = k.abort_jobs_ss,
    ) -> None:  # fmt: skip
        self._script = script(redis, "claim")
        self._unregister = script(redis, "unregister")
        self._keys = [
            queue_name, k.IDLE_KEY_PREFIX + queue_name, k.WORKER_LIST_PREFIX + worker_id, abort_set,
            k.PAUSED_KEY_PREFIX + queue_name, k.LIMITS_KEY_PREFIX + queue_name, k.WAKE_KEY_PREFIX + queue_name,
            k.REWIND_KEY_PREFIX + queue_name, k.SLOT_GUARD_KEY_PREFIX + queue_name,
        ]  # fmt: skip
        self._owner = worker_id
        self._lease_ms = lease_ms
        # a job handed over holds the hand-off lease until this worker takes it: never longer than a lease
        self._idle_member = f"{worker_id}|{min(k.HANDOFF_LEASE_MS, lease_ms)}"
        self._idle_ttl_ms = idle_ttl_ms
        self._cursor: tuple[bytes, bytes] = (b"", b"-inf")
        self._cursor_set_at = 0.0
        self._reset_every_s = min(lease_ms / 3000, _CURSOR_RESET_MAX_S)

    def reset(self) -> None:
        self._cursor = (b"", b"-inf")

    def rewind(self) -> None:
        """Before an idle wait: go back to the first job of the cursor's millisecond, so that a job enqueued
        since with the same due time (ties sort by id, maybe before the cursor) is found, without re-scanning
        every running job before it as a reset would."""
        member, score = self._cursor
        if member:
            self._cursor = (b"", repr(float(score) - 1).encode())

    def rewind_to(self, score_ms: float) -> None:
        """A job was put back (or enqueued) due at ``score_ms``: scan from there if the cursor is past it."""
        if score_ms <= float(self._cursor[1]):
            self._cursor = (b"", repr(score_ms - 1).encode())

    async def claim(self, limit: int, skip: list[bytes] | None = None) -> ClaimBatch:
        """Up to ``limit`` jobs; ``skip``: ids running here without a lease, which this worker must not claim."""
        now = time.monotonic()
        # the periodic rescan also sweeps the limits: slots of jobs whose lease ended with nobody to finish them
        sweep = now - self._cursor_set_at > self._reset_every_s
        if sweep:
            self.reset()
            self._cursor_set_at = now
        member, score = self._cursor
        scan = max(limit * 2, _SCAN_ROWS_MIN)
        args: list[bytes | str | int] = [
            int(time.time() * 1000), limit, self._lease_ms, member, score, scan, self._idle_member,
            self._idle_ttl_ms, self._owner, int(sweep), *(skip or ()),
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
        # one script, not MULTI: the idle set and the worker's list share the queue's slot (keyspace.py)
        leftovers = await self._unregister(keys=self._keys[1:3], args=[self._idle_member], client=redis)
        return [Claimed.unpack(packed) for packed in leftovers]
