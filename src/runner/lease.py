"""Leases: a running job's in-progress key lives for a short lease, renewed while the job runs.

arq sets the in-progress key for the *largest* job timeout + 10 s, so a crashed worker's job waits that long
before anyone runs it again. Our worker sets it for one lease (default 30 s) and renews the keys of all its
running jobs together, in one pipeline, every third of a lease; after a crash the job is claimed again once
its lease runs out (claims rescan the queue from its head at least once a second). A job's own timeout is
still enforced by the worker running it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from redis.asyncio import Redis

from . import constants as k
from .outage import REDIS_DOWN, Outage


async def renew_leases(redis: Redis, running: Callable[[], Iterable[bytes]], lease_ms: int) -> None:
    """Forever: every lease/3, extend the in-progress key of every job ``running()`` names to a full lease."""
    outage = Outage("renewing leases")
    while True:
        await asyncio.sleep(lease_ms / 3000)
        ids = list(running())
        if not ids:
            continue
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for raw_id in ids:
                    pipe.pexpire(k.in_progress_key_prefix.encode() + raw_id, lease_ms)
                await pipe.execute()
        except REDIS_DOWN as e:
            await outage.failed(e)
        else:
            outage.ok()
