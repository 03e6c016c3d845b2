"""Claiming named jobs, for arq's ``Worker.start_jobs(job_ids)``: each becomes ours exactly as a batch claim
(``claim.lua``) makes it — in-progress key set to this worker's id for one lease, try counter bumped, a pending
abort taken — so it runs in the registry of running jobs with its lease renewed, never beside it.

Each job is taken by one script of its queue's slot (``scripts/claim_id.lua``): only when it is queued and its
in-progress key can be set (``SET NX``, the key a stock arq worker WATCHes), so it never takes a job another worker
holds. This is not the hot path, only arq's API.
"""

from __future__ import annotations

from redis.asyncio import Redis

from . import constants as k
from .claim import Claimed
from .scripts import script

#: arq's expiry of a job's try counter (``claim.lua`` uses the same)
_RETRY_KEY_TTL_S = 88400


async def claim_ids(
    redis: Redis, queue_name: str, raw_ids: list[bytes], owner: str, lease_ms: int, abort_set: str = k.abort_jobs_ss
) -> list[Claimed]:
    """The jobs of ``raw_ids`` that are queued in ``queue_name`` and run nowhere, now this worker's (a pending abort
    is taken from ``abort_set``)."""
    claim_id = script(redis, "claim_id")
    claimed = []
    for raw_id in raw_ids:
        job_id = raw_id.decode()
        keys = [
            queue_name, k.in_progress_key_prefix + job_id, k.retry_key_prefix + job_id, k.job_key_prefix + job_id,
            abort_set,
        ]  # fmt: skip
        taken = await claim_id(keys=keys, args=[job_id, owner, lease_ms, _RETRY_KEY_TTL_S])
        if taken:
            score, job_try, payload, aborted = taken
            claimed.append(Claimed(raw_id, int(float(score)), payload or b"", int(job_try), bool(aborted)))
    return claimed
