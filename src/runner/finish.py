"""Group commit of outcomes: what finishes while one write is in flight goes in the next, in one Lua call
(``scripts/finish.lua``).

There is no timer: the first outcome starts a write at once, and outcomes that arrive while it is in flight go in
the next one as soon as it returns, so batches grow with load and an idle worker writes at once. A finished
job's outcome exists only in memory for at most one write. While Redis is away (an outage: see ``outage.py``),
outcomes stay in memory and are written when it is back; an outcome Redis refuses is retried on its own, with
an error logged each time, so it holds up no other. A crash loses what was not yet written; those jobs run again
after their lease, which at-least-once allows. The script writes an outcome only while the job's lease is this
worker's (or gone): one that lost its lease never clobbers the new owner's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from redis.asyncio import Redis

from . import constants as k
from .outage import REDIS_DOWN, Outage, RedisHealth, is_refusal
from .scripts import script

if TYPE_CHECKING:
    from .failures import JobFailure

logger = logging.getLogger("hasten.worker")


@dataclass(slots=True)
class Outcome:
    """What to write for one job: ``done`` (result kept for ``number`` ms, -1 forever), ``again`` (back in the
    queue, due at ``number`` ms) or ``back`` (as ``again``, giving back the try: interrupted by a shutdown)."""

    raw_id: bytes
    action: Literal["done", "again", "back"]
    result: bytes
    number: int
    #: the dead-letter record of a job that failed for good
    dead: bytes = b""
    #: a final outcome that is a success
    succeeded: bool = False
    #: for cron jobs only (the entry's state records it): how the run ended, and how long it took
    run_status: str = ""
    run_ms: int = 0
    #: a failed try or a dead letter, for the failure hooks and the trace (not written)
    failure: JobFailure | None = None


class Finisher:
    def __init__(
        self, redis: Redis, queue_name: str, owner: str, dlq_retention_ms: int, health: RedisHealth | None = None
    ) -> None:
        self._script = script(redis, "finish")
        self._keys = [queue_name, k.WAKE_KEY_PREFIX + queue_name, k.DLQ_KEY_PREFIX + queue_name]
        self._owner = owner
        self._dlq_retention_ms = dlq_retention_ms
        self._pending: list[Outcome] = []
        self._flushing: asyncio.Task[None] | None = None
        self._outage = Outage("writing job outcomes", health)

    def __len__(self) -> int:
        """Outcomes not yet written."""
        return len(self._pending)

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._write(batch)
                except REDIS_DOWN as e:
                    # keep them: outcomes are only dropped once written (Redis restarting, full, a short outage)
                    if is_refusal(e) and len(batch) > 1:
                        await self._write_one_by_one(batch)
                        continue
                    self._pending[:0] = batch
                    await self._outage.failed(e)
                else:
                    self._outage.ok()
        finally:
            self._flushing = None

    async def _write(self, batch: list[Outcome]) -> None:
        now_ms = int(time.time() * 1000)
        args: list[bytes | str | int] = [k.MAX_WAKE_TOKENS, now_ms, self._dlq_retention_ms, self._owner]
        for o in batch:
            args += [o.raw_id, o.action, o.result, o.number, o.dead, o.run_status, o.run_ms]
        for raw_id in await self._script(keys=self._keys, args=args):
            logger.info(
                "job %s: outcome not written: its lease was lost, the job is another worker's now (or done)",
                raw_id.decode(errors="backslashreplace"),
            )

    async def _write_one_by_one(self, batch: list[Outcome]) -> None:
        """Redis refused the batch: write each outcome alone, so that the one it refuses holds up no other. The
        refused one stays pending and is retried (logged at ERROR each time) after a backoff."""
        refused: BaseException | None = None
        for outcome in batch:
            try:
                await self._write([outcome])
            except REDIS_DOWN as e:
                self._pending.append(outcome)
                refused = e
        if refused is not None:
            await self._outage.failed(refused)

    async def drain(self, timeout_s: float | None = None) -> int:
        """Wait until every outcome added so far is written, at most ``timeout_s``; returns how many are left."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._flushing is not None or self._pending:
                    if self._flushing is None:
                        self._flushing = asyncio.create_task(self._flush_loop())
                    await asyncio.shield(self._flushing)
        return len(self._pending)

    async def close(self) -> None:
        """On shutdown: write what is pending, for a bounded time; what Redis did not take is left to the leases."""
        left = await self.drain(k.SHUTDOWN_WRITE_BOUND_S)
        if left:
            logger.warning(
                "%d job outcomes could not be written (Redis unavailable); those jobs run again after their lease",
                left,
            )
