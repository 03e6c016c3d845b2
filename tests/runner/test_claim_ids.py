"""Claiming named jobs (arq's ``start_jobs``): each becomes this worker's as a batch claim makes it, and a job
another worker holds, or one not queued, is left alone."""

from __future__ import annotations

from arq.connections import ArqRedis

from src.runner import JobClient
from src.runner import constants as k
from src.runner.claim_ids import claim_ids
from tests.sample_jobs import add


async def test_named_jobs_are_claimed_as_ours_and_others_left_alone(redis: ArqRedis, client: JobClient) -> None:
    free = await client.enqueue(add, 1)
    held = await client.enqueue(add, 2)
    await redis.set(k.in_progress_key_prefix + held.job_id, b"another-worker", px=60_000)
    ids = [free.job_id.encode(), held.job_id.encode(), b"never-enqueued"]
    [claimed] = await claim_ids(redis, k.default_queue_name, ids, "me", 30_000)
    assert claimed.job_id == free.job_id and claimed.job_try == 1 and claimed.payload and not claimed.aborted
    assert await redis.get(k.in_progress_key_prefix + free.job_id) == b"me"
    assert 0 < await redis.pttl(k.in_progress_key_prefix + free.job_id) <= 30_000
    assert await redis.get(k.in_progress_key_prefix + held.job_id) == b"another-worker"
    assert await claim_ids(redis, k.default_queue_name, [free.job_id.encode()], "me", 30_000) == []  # ours now
