"""Batched finish: outcomes that complete close together are written in one Lua call (``scripts/finish.lua``).

There is no timer: the first outcome starts a flush on the next loop iteration, and outcomes that arrive while
a flush is in flight go in the next one, so batches grow with load and an idle worker writes at once. While Redis
is away, outcomes stay in memory and are written when it is back. A crash
may lose the outcomes of the flush in flight (a few ms); those jobs run again after their in-progress key
expires, which at-least-once allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from . import constants as k
from .outage import REDIS_DOWN, Outage
from .scripts import script

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


def _script_failed(error: BaseException) -> bool:
    """The finish script itself raised (an error inside Lua), which no retry mends."""
    return isinstance(error, ResponseError) and "user_script" in str(error)


class Finisher:
    def __init__(self, redis: Redis, queue_name: str, dlq_retention_ms: int) -> None:
        self._script = script(redis, "finish")
        self._keys = [queue_name, k.WAKE_KEY_PREFIX + queue_name, k.DLQ_KEY_PREFIX + queue_name]
        self._dlq_retention_ms = dlq_retention_ms
        self._pending: list[Outcome] = []
        self._flushing: asyncio.Task[None] | None = None
        self._outage = Outage("writing job outcomes")

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
                    if _script_failed(e):
                        await self._write_one_by_one(batch)
                        continue
                    # keep them: outcomes are only dropped once written (Redis restarting, a short outage)
                    self._pending[:0] = batch
                    await self._outage.failed(e)
                else:
                    self._outage.ok()
        finally:
            self._flushing = None

    async def _write(self, batch: list[Outcome]) -> None:
        args: list[bytes | str | int] = [k.MAX_WAKE_TOKENS, int(time.time() * 1000), self._dlq_retention_ms]
        for o in batch:
            args += [o.raw_id, o.action, o.result, o.number, o.dead, o.run_status, o.run_ms]
        await self._script(keys=self._keys, args=args)

    async def _write_one_by_one(self, batch: list[Outcome]) -> None:
        """A script error is no outage: retrying the batch would fail again and hold every later outcome
        behind it. Write each outcome alone and drop the one that fails (its job runs again once its
        in-progress key expires)."""
        for outcome in batch:
            try:
                await self._write([outcome])
            except REDIS_DOWN as e:
                if not _script_failed(e):
                    self._pending.append(outcome)
                    continue
                logger.exception("job %s: writing its outcome failed; it runs again after its lease", outcome.raw_id)

    async def drain(self) -> None:
        """Wait until every outcome added so far is written."""
        while self._flushing is not None or self._pending:
            if self._flushing is None:
                self._flushing = asyncio.create_task(self._flush_loop())
            await asyncio.shield(self._flushing)
