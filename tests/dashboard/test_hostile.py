"""Hostile data in Redis (records with odd fields, payloads that are not jobs, markup in names) never breaks a
page or an API answer, and is shown escaped."""

from __future__ import annotations

import orjson
from arq.connections import ArqRedis

from src.runner import constants as k
from src.runner.dlq import DeadLetters
from src.runner.worker_registry import live_workers
from tests.dashboard.conftest import Dash

PAGES = ["/", "/jobs", "/jobs/j1", "/jobs/d1", "/dead-letters", "/cron", "/workers"]
API = ["/api/queues", "/api/workers", "/api/dead-letters", "/api/cron", "/api/jobs", "/api/jobs/j1"]


async def test_odd_records_never_break_a_page(redis: ArqRedis, dash: Dash) -> None:
    q = k.default_queue_name
    odd_worker = {
        "worker_id": "<i>w1</i>", "queue": q, "host": 5, "pid": "x", "version": None, "concurrency": "lots",
        "started_ms": "soon", "running": "many", "loop_lag_s": "slow", "extra": 1,
    }  # fmt: skip
    good_worker = {"worker_id": "w2", "queue": q, "host": "<b>h</b>", "pid": 1, "version": "1", "concurrency": 2,
                   "started_ms": 1, "heartbeat_ms": 2}  # fmt: skip
    for worker_id, record in (("w1", odd_worker), ("w2", good_worker)):
        await redis.set(k.HEARTBEAT_KEY_PREFIX + worker_id, orjson.dumps(record))
        await redis.zadd(k.WORKERS_KEY_PREFIX + q, {worker_id: 1})
    await redis.set(k.DLQ_ENTRY_KEY_PREFIX + "d1", orjson.dumps({"job_id": "d1", "weird": True}))
    await redis.set(k.DLQ_ENTRY_KEY_PREFIX + "d2", b"not json")
    await redis.zadd(k.DLQ_KEY_PREFIX + q, {"d1": 1, "d2": 2})
    await redis.zadd(q, {"j1": 1})
    await redis.set(k.job_key_prefix + "j1", b"\x00garbage")
    await redis.rpush(k.TRY_ERRORS_KEY_PREFIX + "j1", b"[1, 2]")
    await redis.sadd(k.CRON_ENTRIES_KEY, "<script>c1</script>")
    await redis.hset(
        k.CRON_STATE_KEY_PREFIX + "<script>c1</script>",
        mapping={"schedule": "<b>x</b>", "next_tick": "soon", "enqueued": "x"},
    )
    _, http = dash()
    for path in PAGES:
        page = await http.get(path, headers={"accept": "text/html"})
        assert page.status_code == 200, (path, page.text[:300])
        assert "<script>c1" not in page.text and "<b>h</b>" not in page.text and "<i>w1" not in page.text
    for path in API:
        assert (await http.get(path)).status_code == 200, path
    # the odd worker record is skipped; the unreadable dead letters are listed, cannot be requeued, can be purged
    assert [w.worker_id for w in await live_workers(redis, q)] == ["w2"]
    dead = DeadLetters(redis)
    assert {d.reason for d in await dead.page()} == {"unreadable record"}
    assert not await dead.requeue("d2") and await dead.requeue_all() == 0
    assert await dead.purge_all() == 2
    assert "unreadable job" in (await http.get("/api/jobs/j1")).json()["error"]
