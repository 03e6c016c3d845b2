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
from .cron import CronEntry
from .cron_state import note_missed, register
from .outage import REDIS_DOWN, Outage

logger = logging.getLogger("hasten.cron")

#: after an unexpected error, try the same ticks again this soon
_RETRY_AFTER_S = 1.0
#: the loop wakes at least this often and writes the table's definitions again (after Redis lost its data)
_REGISTER_EVERY = timedelta(seconds=60)
#: a loop that wakes this much later than it planned joins again (see :meth:`CronScheduler.run`)
_LATE_REJOIN = timedelta(seconds=60)
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
        #: each entry bound to the queue it enqueues into: its keys carry that queue's hash tag
        self.entries = [entry.for_queue(client.queue_name) for entry in entries]
        self.client = client
        self.now = now
        self.sleep = sleep
        #: per entry, the last tick handled; ticks after it are due once the clock passes them
        self.cursor: dict[str, datetime] = {}
        #: when this scheduler last joined; None before its start and while Redis is unreachable
        self.joined: datetime | None = None
        self._started = False
        self._registered = datetime.min.replace(tzinfo=UTC)

    async def run(self) -> None:
        outage = Outage("enqueueing cron ticks")
        wake_at: datetime | None = None
        while self.entries:
            if wake_at is not None and self.now() - wake_at > _LATE_REJOIN:
                # the process was paused, the clock stepped or the loop was blocked: the ticks of that gap
                # count as missed, like ticks no worker was up for
                logger.warning("cron: woke %s late; the ticks in between follow each entry's missed-run policy",
                               self.now() - wake_at)  # fmt: skip
                self.joined = None
            try:
                if self.joined is None:
                    await self.join()
                elif self.now() - self._registered >= _REGISTER_EVERY:
                    self._registered = self.now()
                    await register(self.client.redis, self.entries, self._registered)
                wake_at = min(await self.step(), self.now() + _REGISTER_EVERY)
            except REDIS_DOWN as e:
                self.joined = None  # ticks due until Redis is back are missed: the policy decides
                wake_at = None
                await outage.failed(e)
                continue
            except Exception:
                logger.exception("cron: enqueueing due ticks failed; trying again in %gs", _RETRY_AFTER_S)
                wake_at = None
                await self.sleep(_RETRY_AFTER_S)
                continue
            outage.ok()
            await self.sleep(max((wake_at - self.now()).total_seconds(), 0))

    async def join(self) -> None:
        """Register the table, run the missed ticks each entry's policy picks, and (on the first join) the
        ``run_at_startup`` entries."""
        now = self._registered = self.now()
        last_ticks = await register(self.client.redis, self.entries, now)
        for entry in self.entries:
            last = max(filter(None, (last_ticks[entry.name], self.cursor.get(entry.name))), default=None)
            to_run, not_run = entry.missed_to_run(after=last, before=now, now=now)
            for tick in to_run:
                await self._enqueue(entry, tick)
            if not_run:
                logger.info(
                    "cron %s: %s missed tick(s) since %s not run (missed=%r, max_drift_s=%g)", entry.name,
                    f"{not_run}+" if not_run + len(to_run) >= entry.missed_cap else not_run,
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
        """Enqueue one tick; an error of this entry's own (not Redis's) is logged and the tick left out, so one
        bad entry holds up no other."""
        when = tick.isoformat() if tick else "startup"
        try:
            result = await self.client.enqueue_tick(entry, tick, entry.next_tick(tick or self.now()))
        except REDIS_DOWN:
            raise
        except Exception:
            logger.exception("cron %s: tick %s could not be enqueued; left out", entry.name, when)
            return
        if result is TickResult.OVERLAP_SKIPPED:
            logger.info("cron %s: tick %s skipped: the previous run is unfinished (overlap='skip')", entry.name, when)
        elif result is TickResult.ENQUEUED:
            logger.debug("cron %s: enqueued tick %s", entry.name, when)
