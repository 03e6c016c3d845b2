"""The loop every worker runs over the cron table; each tick is enqueued once cluster-wide.

Every worker computes the same ticks; :meth:`JobClient.enqueue_tick` sets a per-tick ``SET NX`` marker and
writes the job in the same Lua call, so only one worker enqueues a tick, under a job id derived from it. There
is no leader: a worker that dies leaves the others enqueueing.

A scheduler *joins* when its worker starts and again when Redis is back after an outage. Ticks between an
entry's last enqueued tick (read from Redis, so any worker's counts) and the join are **missed**: no worker
could enqueue them. The entry's missed-run policy picks which of them run (``skip``: none, ``latest``: the most
recent, ``all``: each, both within ``max_drift_s``). From the join on, every tick is enqueued, however late the
loop wakes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from .client import JobClient, TickResult
from .cron import MISSED_COUNTED_UP_TO, CronEntry
from .cron_state import note_missed, register
from .outage import REDIS_DOWN, Outage

logger = logging.getLogger("jobs.cron")

#: after an unexpected error, try the same ticks again this soon
_RETRY_AFTER_S = 1.0
#: a tick at the join instant is the join's own (on time); anything before it is missed
_JUST_BEFORE = timedelta(microseconds=1)


class CronScheduler:
    def __init__(
        self,
        entries: Sequence[CronEntry],
        client: JobClient,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.entries = list(entries)
        self.client = client
        self.now = now
        self.sleep = sleep
        #: per entry, the last tick handled; ticks after it are due once the clock passes them
        self.cursor: dict[str, datetime] = {}
        #: when this scheduler last joined; None before its start and while Redis is unreachable
        self.joined: datetime | None = None
        self._started = False

    async def run(self) -> None:
        outage = Outage("enqueueing cron ticks")
        while self.entries:
            try:
                if self.joined is None:
                    await self.join()
                wake_at = await self.step()
            except REDIS_DOWN as e:
                self.joined = None  # ticks due until Redis is back are missed: the policy decides
                await outage.failed(e)
                continue
            except Exception:
                logger.exception("cron: enqueueing due ticks failed; trying again in %gs", _RETRY_AFTER_S)
                await self.sleep(_RETRY_AFTER_S)
                continue
            outage.ok()
            await self.sleep(max((wake_at - self.now()).total_seconds(), 0))

    async def join(self) -> None:
        """Register the table, run the missed ticks each entry's policy picks, and (on the first join) the
        ``run_at_startup`` entries."""
        now = self.now()
        last_ticks = await register(self.client.redis, self.entries, now)
        for entry in self.entries:
            last = max(filter(None, (last_ticks[entry.name], self.cursor.get(entry.name))), default=None)
            to_run, not_run = entry.missed_to_run(after=last, before=now, now=now)
            for tick in to_run:
                await self._enqueue(entry, tick)
            if not_run:
                logger.info(
                    "cron %s: %s missed tick(s) since %s not run (missed=%r, max_drift_s=%g)", entry.name,
                    f"{not_run}+" if not_run >= MISSED_COUNTED_UP_TO else not_run,
                    last.isoformat() if last else "?", entry.missed, entry.max_drift_s,
                )  # fmt: skip
            if to_run or not_run:
                await note_missed(self.client.redis, entry, not_run)
            self.cursor[entry.name] = now - _JUST_BEFORE
        if not self._started:
            for entry in self.entries:
                if entry.run_at_startup:
                    await self._enqueue(entry, None)
            self._started = True
        self.joined = now

    async def step(self) -> datetime:
        """Enqueue every tick due by now; return when the next one is due."""
        now = self.now()
        wake_at: datetime | None = None
        for entry in self.entries:
            for tick in entry.ticks_after(self.cursor[entry.name]):
                if tick > now:
                    wake_at = tick if wake_at is None else min(wake_at, tick)
                    break
                await self._enqueue(entry, tick)
                self.cursor[entry.name] = tick
        assert wake_at is not None  # every entry has a next tick
        return wake_at

    async def _enqueue(self, entry: CronEntry, tick: datetime | None) -> None:
        after = tick or self.now()
        result = await self.client.enqueue_tick(entry, tick, entry.next_tick(after))
        when = tick.isoformat() if tick else "startup"
        if result is TickResult.OVERLAP_SKIPPED:
            logger.info("cron %s: tick %s skipped: the previous run is unfinished (overlap='skip')", entry.name, when)
        elif result is TickResult.ENQUEUED:
            logger.debug("cron %s: enqueued tick %s", entry.name, when)
