"""The hot path's loop: claim while slots are free and jobs are due, otherwise wait without polling.

:class:`Pickup` is given the worker's registry of running jobs (``running.py``): a batch claim (``claim.py``)
when slots are free, a blocking wait on the wake-up list (``wakeup.py``) when nothing is due, one task per job
(run by ``execute.py``, which hands its outcome to the group-committing finisher, ``finish.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from .claim import Claimed, Claimer
from .finish import Finisher, Outcome
from .lease import LeaseKeeper
from .outage import REDIS_DOWN, Outage, RedisHealth, reassert_cancellation
from .running import RunningJobs
from .wakeup import WakeUp

logger = logging.getLogger("hasten.worker")

#: how long the pickup loop waits for more slots when only a few are free
_GATHER_SLOTS_S = 0.001
#: an idle wait shorter than this is not worth a blocking call
_MIN_WAIT_S = 0.0005
#: the shortest fallback poll: ``poll_delay=0`` (arq: poll without pause) would make an idle worker send Redis tens
#: of thousands of commands a second; our client wakes it at once anyway, plain arq producers wait at most this
_MIN_POLL_S = 0.01


@dataclass(slots=True)
class PickupLimits:
    max_jobs: int
    poll_delay_s: float
    burst: bool = False
    #: burst mode: stop after starting this many jobs (negative: no limit)
    max_burst_jobs: int = -1


class Pickup:
    """Takes jobs for one worker and starts each as a task in ``running``."""

    def __init__(
        self,
        *,
        redis: Redis,
        queue_name: str,
        limits: PickupLimits,
        running: RunningJobs,
        claimer: Claimer,
        wake: WakeUp,
        leases: LeaseKeeper,
        finisher: Finisher,
        execute: Callable[[Claimed], Awaitable[None]],
        health: RedisHealth | None = None,
    ) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self.limits = limits
        self._running = running
        self._claimer = claimer
        self._wake = wake
        self._leases = leases
        self._finisher = finisher
        self._execute = execute
        self._health = health
        #: cleared by a shutdown: no job is taken any more
        self.taking = True
        #: below this many free slots (with jobs running) the loop gathers slots before claiming
        self._claim_min = min(8, max(limits.max_jobs // 4, 1))
        #: when the loop last turned without a Redis error, and whether it waits for a free slot (all busy): read
        #: by the readiness probe (``probes.py``)
        self.ticked_at = time.monotonic()
        self.waiting_for_slot = False

    async def run(self) -> None:
        """Claim while there are free slots and due jobs; otherwise wait for a job, a free slot or a due time.
        Returns when a burst run is done; otherwise runs until cancelled."""
        outage = Outage("taking jobs", self._health)
        while True:
            try:
                if await self._step():
                    return
                reassert_cancellation()
            except REDIS_DOWN as e:
                self._claimer.reset()
                await outage.failed(e)
            else:
                self.ticked_at = time.monotonic()
                outage.ok()

    def stop(self) -> None:
        """Take no more jobs (a shutdown); the loop waits for slots that it will not fill."""
        self.taking = False
        self._running.slot_free.set()

    async def _step(self) -> bool:
        """One turn of the pickup loop; True when a burst run is done."""
        free = self.limits.max_jobs - len(self._running)
        if self._burst_limit_reached() or not self.taking or free <= 0:
            if self.limits.burst and not len(self._running) and (self._burst_limit_reached() or not self.taking):
                return True
            await self._wait_for_slot(None)
            return False
        if free < self._claim_min and len(self._running):
            # few slots free while jobs run: let a few more finish so one claim starts many (less Redis CPU)
            await asyncio.sleep(_GATHER_SLOTS_S)
            free = self.limits.max_jobs - len(self._running)
        if self.limits.max_burst_jobs >= 0 and self.limits.burst:
            free = min(free, self.limits.max_burst_jobs - self._running.started)
        batch = await self._claimer.claim(free, skip=self._running.lost_ids())
        for claimed in batch.jobs:
            self.start(claimed)
        if batch.more:
            return False
        if self.limits.burst and not len(self._running) and not batch.jobs:
            if not await self._redis.zcard(self._queue_name):
                return True
        await self._idle(batch.next_due_ms)
        return False

    async def _idle(self, next_due_ms: int | None) -> None:
        """Nothing due: wait for a handed-over job or a token, at most until the next deferred job is due."""
        wait_s = max(self.limits.poll_delay_s, _MIN_POLL_S)
        due_in_s = None if next_due_ms is None else (next_due_ms - time.time() * 1000) / 1000
        if due_in_s is not None:
            wait_s = min(wait_s, due_in_s)
        if wait_s < _MIN_WAIT_S:
            return
        self._claimer.rewind()
        if self.limits.burst and len(self._running):
            await self._wait_for_slot(wait_s)
            return
        woken = await self._wake.wait(wait_s, precise=wait_s == due_in_s)
        if isinstance(woken, Claimed):
            self._leases.handed(woken.raw_id)
            self.start(woken)
        elif woken is not None:
            self._claimer.rewind_to(woken)

    def start(self, claimed: Claimed) -> None:
        """Start a claimed job, unless a copy of it already runs here: then its lease was lost while that copy
        ran (the process stalled past it) and this claim took it again. A worker never runs two copies of a job
        and never re-claims one: the claim goes back, its try unspent, and the running copy's lease counts as
        lost (its outcome is written only if nobody else took the job meanwhile)."""
        if self._running.start(claimed, self._run_job):
            return
        if self._running.lease_lost(claimed.job_id):
            logger.warning(
                "job %s: lease lost while it ran here (the process stalled past it); not taken again by this "
                "worker, and not renewed",
                claimed.job_id,
            )
        self._finisher.add(Outcome(claimed.raw_id, "back", b"", claimed.score_ms))

    async def _run_job(self, claimed: Claimed) -> None:
        try:
            await self._execute(claimed)  # the executor hands the outcome to the finisher
        except Exception:
            # a bug of ours (or an arq hook that raised), not the job's: it is claimed again when its lease expires
            logger.exception("job %s: internal error; it will run again after its lease", claimed.job_id)

    async def _wait_for_slot(self, timeout_s: float | None) -> None:
        self._running.slot_free.clear()
        self.waiting_for_slot = timeout_s is None
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races the wait's end
        with contextlib.suppress(TimeoutError):
            try:
                async with asyncio.timeout(timeout_s):
                    await self._running.slot_free.wait()
            finally:
                self.waiting_for_slot = False

    def _burst_limit_reached(self) -> bool:
        return self.limits.burst and 0 <= self.limits.max_burst_jobs <= self._running.started
