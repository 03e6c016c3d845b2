"""The hot path's loop: claim while slots are free and jobs are due, otherwise wait without polling.

:class:`Pickup` is a mixin of :class:`~src.runner.worker.Worker`: a batch claim (``claim.py``) when slots are
free, a blocking wait on the wake-up list (``wakeup.py``) when nothing is due, one task per job
(``execute.py``) whose outcome goes to the batched finisher (``finish.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from arq.connections import ArqRedis

from .claim import Claimed, Claimer
from .finish import Finisher, Outcome
from .outage import REDIS_DOWN, Outage
from .wakeup import WakeUp

logger = logging.getLogger("hasten.worker")

#: how long the pickup loop waits for more slots when only a few are free
_GATHER_SLOTS_S = 0.001
#: an idle wait shorter than this is not worth a blocking call
_MIN_WAIT_S = 0.0005


class Pickup:
    # set by Worker.__init__ (ours or arq's)
    max_jobs: int
    tasks: dict[str, asyncio.Task[Any]]
    allow_pick_jobs: bool
    burst: bool
    max_burst_jobs: int
    queue_name: str
    poll_delay_s: float
    pool: ArqRedis
    _wake: WakeUp | None
    _finisher: Finisher | None
    _slot_free: asyncio.Event
    _started_count: int
    _raw_ids: dict[str, bytes]
    _claim_min: int

    async def execute(self, claimed: Claimed) -> Outcome:
        """Run one claimed job (``Execution.execute``, which comes first in the worker's bases)."""
        raise NotImplementedError

    async def _pickup(self, claimer: Claimer) -> None:
        """Claim while there are free slots and due jobs; otherwise wait for a job, a free slot or a due time."""
        outage = Outage("taking jobs")
        while True:
            try:
                if await self._pickup_step(claimer):
                    return
            except REDIS_DOWN as e:
                claimer.reset()
                await outage.failed(e)
            else:
                outage.ok()

    async def _pickup_step(self, claimer: Claimer) -> bool:
        """One turn of the pickup loop; True when a burst run is done."""
        free = self.max_jobs - len(self.tasks)
        if self._burst_limit_reached() or not self.allow_pick_jobs or free <= 0:
            if self.burst and not self.tasks and self._burst_limit_reached():
                return True
            await self._wait_for_slot(None)
            return False
        if free < self._claim_min and self.tasks:
            # few slots free while jobs run: let a few more finish so one claim starts many (less Redis CPU)
            await asyncio.sleep(_GATHER_SLOTS_S)
            free = self.max_jobs - len(self.tasks)
        batch = await claimer.claim(free if self.max_burst_jobs < 0 else min(free, self._burst_left()))
        for claimed in batch.jobs:
            self._start(claimed)
        if batch.more:
            return False
        if self.burst and not self.tasks and not batch.jobs and not await self.pool.zcard(self.queue_name):
            return True
        await self._idle(claimer, batch.next_due_ms)
        return False

    async def _idle(self, claimer: Claimer, next_due_ms: int | None) -> None:
        """Nothing due: wait for a handed-over job or a token, at most until the next deferred job is due."""
        assert self._wake is not None
        wait_s = self.poll_delay_s
        due_in_s = None if next_due_ms is None else (next_due_ms - time.time() * 1000) / 1000
        if due_in_s is not None:
            wait_s = min(wait_s, due_in_s)
        if wait_s < _MIN_WAIT_S:
            return
        claimer.reset()
        if self.burst and self.tasks:
            await self._wait_for_slot(wait_s)
            return
        handed = await self._wake.wait(wait_s, precise=wait_s == due_in_s)
        if handed is not None:
            self._start(handed)

    def _start(self, claimed: Claimed) -> None:
        job_id = claimed.job_id
        task = asyncio.create_task(self._run_job(claimed))
        self.tasks[job_id] = task
        self._raw_ids[job_id] = claimed.raw_id
        self._started_count += 1
        task.add_done_callback(lambda _: self._job_done(job_id))

    async def _run_job(self, claimed: Claimed) -> None:
        assert self._finisher is not None
        try:
            outcome = await self.execute(claimed)
        except Exception:
            # a bug of ours, not the job's: leave the job to be claimed again when its in-progress key expires
            logger.exception("job %s: internal error; it will run again", claimed.job_id)
            return
        self._finisher.add(outcome)

    def _job_done(self, job_id: str) -> None:
        self.tasks.pop(job_id, None)
        self._raw_ids.pop(job_id, None)
        self._slot_free.set()

    async def _wait_for_slot(self, timeout_s: float | None) -> None:
        self._slot_free.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot_free.wait(), timeout_s)

    def _running_ids(self) -> Iterable[bytes]:
        return self._raw_ids.values()

    def _burst_left(self) -> int:
        return self.max_burst_jobs - self._started_count

    def _burst_limit_reached(self) -> bool:
        return self.burst and 0 <= self.max_burst_jobs <= self._started_count
