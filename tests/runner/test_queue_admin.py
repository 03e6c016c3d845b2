"""Job listing at scale (``queue_admin.find_jobs``): 200,000 jobs written with pipelines, every filter checked against
the truth computed here, and every request bounded in the rows it examines."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from arq.connections import ArqRedis

from src.runner import Codec
from src.runner import constants as k
from src.runner.queue_admin import SCAN_ROWS, JobPage, find_jobs, list_jobs

N = 200_000
QUEUE = "big"
RARE_EVERY = 40_000


@dataclass
class Row:
    job_id: str
    score: int
    function: str
    state: str


async def _fill(redis: ArqRedis, codec: Codec) -> list[Row]:
    """N jobs, in due order as the zset sorts them; returns the truth."""
    now_ms = int(time.time() * 1000)
    rows = []
    for start in range(0, N, 10_000):
        async with redis.pipeline(transaction=False) as pipe:
            scores = {}
            for i in range(start, start + 10_000):
                job_id = f"{i:06x}-{'c' * 20}"
                function = "rare" if i % RARE_EVERY == 7 else "other" if i % 7 == 0 else "common"
                later = i % 10 == 0
                score = now_ms + 3_600_000 + i if later else now_ms - (N - i) * 10
                state = "queued"
                kwargs = {"n": i, "f": "rare"} if i == 3 else {"n": i}  # an argument that looks like the function
                pipe.set(k.job_key_prefix + job_id, codec.dumps({"t": None, "f": function, "a": [], "k": kwargs,
                                                                  "et": now_ms}))  # fmt: skip
                if later:
                    state = "deferred"
                    if i % 100 == 0:
                        pipe.set(k.retry_key_prefix + job_id, 2)
                        state = "retrying"
                elif i % 10_000 == 1:
                    pipe.set(k.in_progress_key_prefix + job_id, "w1")
                    state = "running"
                scores[job_id] = score
                rows.append(Row(job_id, score, function, state))
            pipe.zadd(QUEUE, scores)
            await pipe.execute()
    rows.sort(key=lambda r: (r.score, r.job_id))
    return rows


@pytest.fixture
async def truth(redis: ArqRedis, codec: Codec) -> list[Row]:
    return await _fill(redis, codec)


async def _walk(redis: ArqRedis, codec: Codec, limit: int = 50, **filters: object) -> tuple[list[str], list[JobPage]]:
    """Every page of a listing, following its cursor to the end."""
    pages: list[JobPage] = []
    cursor = None
    while True:
        page = await find_jobs(redis, codec.loads, QUEUE, cursor=cursor, limit=limit, **filters)  # type: ignore[arg-type]
        pages.append(page)
        if (cursor := page.cursor) is None:
            return [job.job_id for p in pages for job in p.jobs], pages


async def test_pages_are_ranges_of_the_due_order_read_from_a_cursor(
    redis: ArqRedis, codec: Codec, truth: list[Row]
) -> None:
    first = await find_jobs(redis, codec.loads, QUEUE)
    assert [j.job_id for j in first.jobs] == [r.job_id for r in truth[:50]]
    assert first.scanned == 50 and first.cursor is not None
    assert [j.function for j in first.jobs] == [r.function for r in truth[:50]]
    assert [j.state for j in first.jobs] == [r.state for r in truth[:50]]
    # a page deep in the queue reads as few rows as the first
    middle = truth[N // 2]
    deep = await find_jobs(redis, codec.loads, QUEUE, cursor=f"{middle.score}:{middle.job_id}")
    assert [j.job_id for j in deep.jobs] == [r.job_id for r in truth[N // 2 + 1 : N // 2 + 51]]
    assert deep.scanned == 50
    # the cursor's row left the queue: the next page starts right after where it was
    await redis.zrem(QUEUE, middle.job_id)
    after_gone = await find_jobs(redis, codec.loads, QUEUE, cursor=f"{middle.score}:{middle.job_id}", limit=3)
    assert [j.job_id for j in after_gone.jobs] == [r.job_id for r in truth[N // 2 + 1 : N // 2 + 4]]
    # old offset paging still answers
    rows = await list_jobs(redis, codec.loads, QUEUE, function="other", offset=10, limit=5)
    assert [j.job_id for j in rows] == [r.job_id for r in truth if r.function == "other"][10:15]


async def test_filters_match_the_truth_and_every_request_is_bounded(
    redis: ArqRedis, codec: Codec, truth: list[Row]
) -> None:
    # a rare function (5 jobs in 200k, and one job whose argument only looks like it): bounded requests
    found, pages = await _walk(redis, codec, function="rare")
    assert found == [r.job_id for r in truth if r.function == "rare"] and len(found) == 5
    assert all(p.scanned <= SCAN_ROWS for p in pages) and len(pages) >= N // SCAN_ROWS
    assert pages[0].cursor is not None
    # a common function fills its page at once
    common = await find_jobs(redis, codec.loads, QUEUE, function="common")
    assert [j.job_id for j in common.jobs] == [r.job_id for r in truth if r.function == "common"][:50]
    assert common.scanned < 100
    for state in ("running", "retrying", "deferred"):
        found, pages = await _walk(redis, codec, limit=1000, state=state)
        assert found == [r.job_id for r in truth if r.state == state], state
        assert all(p.scanned <= SCAN_ROWS for p in pages)
    queued = await find_jobs(redis, codec.loads, QUEUE, state="queued", limit=200)
    assert [j.job_id for j in queued.jobs] == [r.job_id for r in truth if r.state == "queued"][:200]
    j = next(i for i, r in enumerate(truth) if r.state == "running" and i > 300)  # a range around a running job
    low, high = truth[j - 200].score, truth[j + 200].score
    found, _ = await _walk(redis, codec, limit=100, due_from_ms=low, due_to_ms=high)
    assert found == [r.job_id for r in truth if low <= r.score <= high] and len(found) == 401
    found, _ = await _walk(redis, codec, due_from_ms=low, due_to_ms=high, state="running")
    assert found == [truth[j].job_id]
    found, _ = await _walk(redis, codec, id_prefix="01e2a")
    assert found == [r.job_id for r in truth if r.job_id.startswith("01e2a")] and len(found) == 16
