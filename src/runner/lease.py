"""Owned leases: a running job's in-progress key names its worker and lives for a short lease, renewed while the
job runs.

arq sets the in-progress key (to ``1``) for the *largest* job timeout + 10 s, so a crashed worker's job waits that
long before anyone runs it again. Our worker writes its own id into the key for one lease (default 30 s) and
renews the keys of all its running jobs together, every third of a lease, with a compare-and-renew
(``scripts/renew.lua``): a lease that is gone (it expired while the process stalled) or held by someone else is
logged once and never renewed again — the job may run elsewhere now, and this worker's outcome for it will not be
written over the new owner's (``scripts/finish.lua``). Once a job's function has returned, its outcome's write
ends the lease (on another connection: a renewal may cross it), so the renewer says nothing of that job any more;
if its lease was in fact lost before, the finish script refuses the outcome and the finisher logs that. After a
crash the job is claimed again once its lease runs out. A job handed to an idle worker (``enqueue.lua``) carries a
short hand-off lease, so that a worker that died just after registering as idle holds it for seconds only; the claim
call that takes it from the worker's list makes it a full lease, and so does the renewer, within a third of the
hand-off lease, for one the blocking pop took.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis

from . import constants as k
from .outage import REDIS_DOWN, Outage, RedisHealth, reassert_cancellation
from .running import RunningJobs
from .scripts import script

logger = logging.getLogger("hasten.worker")


class LeaseKeeper:
    """Renews the leases of the jobs in ``running`` that are still ``owner``'s."""

    def __init__(
        self, redis: Redis, running: RunningJobs, owner: str, lease_ms: int, health: RedisHealth | None = None
    ) -> None:
        self._script = script(redis, "renew")
        self._health = health
        self._running = running
        self._owner = owner
        self._lease_ms = lease_ms
        #: raw ids of handed-over jobs still on their short hand-off lease -> monotonic time to renew them by
        self._handed: dict[bytes, float] = {}
        self._changed = asyncio.Event()

    def handed(self, raw_id: bytes) -> None:
        """A job came on a hand-off lease: make it a full lease within a third of that lease (if it still runs
        then; most jobs are done before, and a renewal with nothing running costs no call)."""
        self._handed[raw_id] = time.monotonic() + min(k.HANDOFF_LEASE_MS, self._lease_ms) / 3000
        self._changed.set()

    async def run(self) -> None:
        """Forever: renew every lease/3, and sooner when a hand-off lease would otherwise run out."""
        outage = Outage("renewing leases", self._health)
        every_s = self._lease_ms / 3000
        next_renewal = time.monotonic() + every_s
        while True:
            wake_at = min([next_renewal, *self._handed.values()])
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wake_at - time.monotonic(), 0)):
                    await self._changed.wait()
            now = time.monotonic()
            if now < next_renewal and not any(at <= now for at in self._handed.values()):
                continue
            handed = list(self._handed)
            try:
                await self.renew()
                reassert_cancellation()
            except REDIS_DOWN as e:
                await outage.failed(e)
                continue
            except Exception as e:  # a bug of ours must not end the renewals: every running job would run twice
                logger.exception("renewing leases failed; trying again")
                await outage.failed(e)
                continue
            outage.ok()
            for raw_id in handed:
                self._handed.pop(raw_id, None)
            next_renewal = time.monotonic() + every_s

    async def renew(self) -> None:
        """One compare-and-renew of every lease still ours; a lease found lost is logged once and dropped."""
        ids = self._running.lease_ids()
        if not ids:
            return
        keys = [k.in_progress_key_prefix.encode() + raw_id for raw_id in ids]
        for position in await self._script(keys=keys, args=[self._owner, self._lease_ms]):
            job_id = ids[int(position) - 1].decode(errors="backslashreplace")
            if self._running.lease_lost(job_id):
                logger.warning(
                    "job %s: lease lost (it expired or another worker took the job over); not renewed again, "
                    "and this worker's outcome for it will not be written over the new owner's",
                    job_id,
                )
