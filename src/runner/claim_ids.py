"""Claiming named jobs, for arq's ``Worker.start_jobs(job_ids)``: each becomes ours exactly as a batch claim
(``claim.lua``) makes it — in-progress key set to this worker's id for one lease, try counter bumped, a pending
abort taken — so it runs in the registry of running jobs with its lease renewed, never beside it.

It takes the job the way a stock arq worker does (``WATCH`` on the in-progress key, then ``MULTI``), so it
never takes a job another worker holds: this is not the hot path, only arq's API.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import WatchError

from . import constants as k
from .claim import Claimed

#: arq's expiry of a job's try counter (``claim.lua`` uses the same)
_RETRY_KEY_TTL_S = 88400


async def claim_ids(
    redis: Redis, queue_name: str, raw_ids: list[bytes], owner: str, lease_ms: int, abort_set: str = k.abort_jobs_ss
) -> list[Claimed]:
    """The jobs of ``raw_ids`` that are queued in ``queue_name`` and run nowhere, now this worker's (a pending abort
    is taken from ``abort_set``)."""
    claimed = []
    for raw_id in raw_ids:
        job_id = raw_id.decode()
        in_progress = k.in_progress_key_prefix + job_id
        retry = k.retry_key_prefix + job_id
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.watch(in_progress)
            if await pipe.exists(in_progress):
                continue
            score = await pipe.zscore(queue_name, job_id)
            if score is None:
                continue
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(in_progress, owner, px=lease_ms)
            pipe.incr(retry)
            pipe.expire(retry, _RETRY_KEY_TTL_S)
            pipe.get(k.job_key_prefix + job_id)
            pipe.zrem(abort_set, job_id)
            try:
                _, job_try, _, payload, aborted = await pipe.execute()
            except WatchError:
                continue  # another worker took it meanwhile
        claimed.append(Claimed(raw_id, int(score), payload or b"", int(job_try), bool(aborted)))
    return claimed
