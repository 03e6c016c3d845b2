"""The loop every worker runs over the cron table; each tick is enqueued once cluster-wide.

Every worker computes the same ticks; :meth:`JobClient.enqueue_tick` sets a per-tick ``SET NX`` marker and
writes the job in the same Lua call, so only one worker enqueues a tick, with a job id derived from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from .client import JobClient
from .cron import CronEntry
from .outage import REDIS_DOWN, Outage

logger = logging.getLogger("jobs.cron")

#: after an unexpected error, try the same ticks again this soon
_RETRY_AFTER_S = 1.0


class CronScheduler:
    def __init__(
        self,
        entries: Sequence[CronEntry],
        client: JobClient,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.entries = list(entries)
        self.client = client
        self.now = now
        start = now()
        self.next_tick = {entry.name: entry.next_tick(start) for entry in self.entries}

    async def run(self) -> None:
        outage = Outage("enqueueing cron ticks")
        while self.entries:
            due = min(self.next_tick.values())
            await asyncio.sleep(max((due - self.now()).total_seconds(), 0))
            try:
                await self.enqueue_due()
            except REDIS_DOWN as e:
                await outage.failed(e)  # the same ticks are tried again: next_tick only moves past enqueued ones
            except Exception:
                logger.exception("cron: enqueueing due ticks failed; trying again in %gs", _RETRY_AFTER_S)
                await asyncio.sleep(_RETRY_AFTER_S)
            else:
                outage.ok()

    async def enqueue_due(self) -> None:
        """Enqueue every tick that is due now and advance each entry past it."""
        now = self.now()
        for entry in self.entries:
            tick = self.next_tick[entry.name]
            while tick <= now:
                if await self.client.enqueue_tick(entry, tick):
                    logger.debug("cron: enqueued %s for %s", entry.name, tick.isoformat())
                tick = entry.next_tick(tick)
                self.next_tick[entry.name] = tick
