"""The worker's metrics and probes, scraped over HTTP from a worker running against the real Redis.

prometheus-client's metrics are per process, so each test runs its worker on a queue of its own and reads only
that queue's series.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from arq.connections import ArqRedis

from src.runner import Codec, JobClient, JobContext, JobHandle, JobStatus, Retry, cron, job
from src.runner import constants as k
from src.runner.finish import Outcome
from src.runner.metrics import BUCKETS_S, UNKNOWN_FUNCTION, JobMetrics, outcome_label
from src.runner.metrics_config import MetricsConfig
from src.runner.worker import Worker
from tests.metrics_scrape import Samples, http_get, parse, total, value
from tests.sample_jobs import add, flaky, nap, refuse
from tests.spawn import ROOT
from tests.waiting import wait_for

ENDPOINT = MetricsConfig(port=0)


@job
async def asks_again(ctx: JobContext) -> int:
    """Asks to run again once (arq's Retry): put back without failing."""
    if ctx.job_try == 1:
        raise Retry(defer=0.01)
    return ctx.job_try


def _queue() -> str:
    return f"metrics-{uuid4().hex[:8]}"


async def _scrape(worker: Worker) -> Samples:
    assert worker.monitoring is not None
    monitoring = worker.monitoring
    port: int = await wait_for(lambda: monitoring.port, message="the endpoint listening")
    status, body = await http_get(port, "/metrics")
    assert status == 200, body
    return parse(body)


async def test_each_try_counted_once_by_outcome(
    redis: ArqRedis, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    queue = _queue()
    client = JobClient(redis, codec, queue_name=queue)
    worker = running_worker([add, flaky, refuse, asks_again, nap], queue_name=queue, metrics=ENDPOINT)
    handles: list[JobHandle[Any]] = [await client.enqueue(add, i) for i in range(3)]
    handles += [await client.enqueue(flaky, 1), await client.enqueue(refuse), await client.enqueue(asks_again)]
    long = await client.enqueue(nap, 30)
    await redis.enqueue_job("no_such_function", _queue_name=queue)  # a plain arq producer's typo
    for h in handles:
        await wait_for(lambda h=h: _finished(h), message=f"{h.job_id} finished")
    await wait_for(lambda: _is_running(long), message="the long job running")
    assert await long.abort(timeout_s=10)
    await worker.outcomes_written()

    async def settled() -> Samples | None:
        s = await _scrape(worker)
        return s if total(s, "hasten_jobs_finished_total", queue=queue) == 10 else None

    s = await wait_for(settled, message="every try counted")

    def finished(function: str, outcome: str) -> float:
        return total(s, "hasten_jobs_finished_total", queue=queue, function=function, outcome=outcome)

    assert finished("add", "complete") == 3
    assert (finished("flaky", "failed"), finished("flaky", "complete")) == (1, 1)
    assert finished("refuse", "dead") == 1
    assert (finished("asks_again", "retried"), finished("asks_again", "complete")) == (1, 1)
    assert finished("nap", "aborted") == 1
    assert finished(UNKNOWN_FUNCTION, "dead") == 1  # the name from the payload never becomes a label
    assert all("no_such_function" not in dict(labels).values() for _, labels in s)
    for function in ("add", "flaky", "refuse", "asks_again", "nap", UNKNOWN_FUNCTION):
        started = total(s, "hasten_jobs_started_total", queue=queue, function=function)
        ended = total(s, "hasten_jobs_finished_total", queue=queue, function=function)
        assert started == ended > 0, function
        assert value(s, "hasten_jobs_running", {"queue": queue, "function": function}) == 0
        assert total(s, "hasten_job_duration_seconds_count", queue=queue, function=function) == ended
        assert total(s, "hasten_job_queue_wait_seconds_count", queue=queue, function=function) == started


async def _finished(handle: object) -> bool:
    status = await handle.status()  # type: ignore[attr-defined]
    return bool(status in (JobStatus.complete, JobStatus.not_found))


async def _is_running(handle: object) -> bool:
    return bool(await handle.status() is JobStatus.in_progress)  # type: ignore[attr-defined]


async def test_queue_wait_is_from_the_due_time_not_the_enqueue(
    redis: ArqRedis, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    queue = _queue()
    client = JobClient(redis, codec, queue_name=queue)
    worker = running_worker([add, flaky], queue_name=queue, metrics=ENDPOINT)
    deferred = await client.enqueue(add.options(defer_by=1.5), 1)
    assert await deferred.result(timeout_s=10) == 2
    # a failed try's backoff is not waiting either: flaky's second try is due 10-20 ms after the first failed
    assert await (await client.enqueue(flaky, 1)).result(timeout_s=10) == 2
    s = await _scrape(worker)
    labels = {"queue": queue, "function": "add"}
    assert value(s, "hasten_job_queue_wait_seconds_count", labels) == 1
    # it started within a second of its due time, not 1.5 s after its enqueue
    assert value(s, "hasten_job_queue_wait_seconds_bucket", {**labels, "le": "1.0"}) == 1
    flaky_waits = {**labels, "function": "flaky"}
    assert value(s, "hasten_job_queue_wait_seconds_count", flaky_waits) == 2
    assert value(s, "hasten_job_queue_wait_seconds_bucket", {**flaky_waits, "le": "1.0"}) == 2


async def test_queue_gauges_and_cron_are_read_from_redis_at_scrape(
    redis: ArqRedis, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    queue = _queue()
    client = JobClient(redis, codec, queue_name=queue)
    entry = cron("metrics-startup", "@yearly", add, kwargs={"a": 1}, run_at_startup=True)
    worker = running_worker([add, refuse], queue_name=queue, metrics=ENDPOINT, cron_entries=[entry])
    for i in range(3):
        await client.enqueue(add.options(defer_by=3600), i)
    dead = await client.enqueue(refuse)
    await wait_for(lambda: _finished(dead), message="the refused job dead")

    async def read() -> Samples | None:
        s = await _scrape(worker)
        ok = total(s, "hasten_cron_last_success_timestamp_seconds", entry="metrics-startup") > 0
        return s if ok and value(s, "hasten_dead_letters", {"queue": queue}) == 1 else None

    s = await wait_for(read, message="the dead letter and the cron entry's success in the gauges")
    assert value(s, "hasten_queue_stats_up", {}) == 1
    depth = {state: value(s, "hasten_queue_depth", {"queue": queue, "state": state}) for state in
             ("queued", "running", "deferred", "retrying", "dead")}  # fmt: skip
    assert depth == {"queued": 0, "running": 0, "deferred": 3, "retrying": 0, "dead": 1}
    assert value(s, "hasten_queue_oldest_due_age_seconds", {"queue": queue}) == 0
    assert value(s, "hasten_workers_alive", {"queue": queue}) == 1
    # the worker's cron tick is an enqueue of this process
    assert total(s, "hasten_jobs_enqueued_total", queue=queue, function="add") == 1
    assert await redis.zcard(k.DLQ_KEY_PREFIX + queue) == 1


async def test_liveness_holds_while_redis_does_not_answer_readiness_does_not(
    redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    worker = running_worker([add], queue_name=_queue(), metrics=ENDPOINT)
    await _scrape(worker)
    assert worker.monitoring is not None and worker.monitoring.port is not None
    port = worker.monitoring.port

    async def ready() -> bool:
        return (await http_get(port, "/readyz"))[0] == 200

    await wait_for(ready, message="the worker ready")
    await redis.execute_command("CLIENT", "PAUSE", "2500", "ALL")  # type: ignore[no-untyped-call]  # Redis stops answering for 2.5 s
    status, body = await http_get(port, "/readyz")
    assert (status, body.split("(")[0]) == (503, "not ready: Redis unreachable "), body
    assert await http_get(port, "/livez") == (200, "alive\n")  # no reason to restart the worker
    await wait_for(ready, message="ready again once Redis answers")
    assert (await http_get(port, "/nope"))[0] == 404


def test_outcome_labels() -> None:
    def label(action: str, result: bytes = b"", *, dead: bytes = b"", ok: bool = False) -> str:
        return outcome_label(Outcome(b"id", action, result, 0, dead, ok))  # type: ignore[arg-type]

    assert label("done", ok=True) == "complete"
    assert label("done", dead=b"{...}") == "dead"
    assert label("done") == "aborted"
    assert label("again", b'{"try": 1}') == "failed"  # a failed try, tried again after its backoff
    assert label("again") == "retried"  # the job asked (arq's Retry)
    assert label("back") == "retried"  # interrupted by a shutdown, try not spent


def test_a_value_on_a_bucket_bound_is_in_that_bucket() -> None:
    from prometheus_client import REGISTRY, generate_latest

    queue = _queue()
    metrics = JobMetrics(queue, ["f"])
    meter = metrics.started("f", 0)
    meter.queue_wait.observe(BUCKETS_S[2])
    meter.finished(Outcome(b"x", "done", b"", 0, succeeded=True), BUCKETS_S[2])
    metrics.flush()
    s = parse(generate_latest(REGISTRY).decode())
    labels = {"queue": queue, "function": "f"}
    assert value(s, "hasten_job_duration_seconds_bucket", {**labels, "le": str(BUCKETS_S[1])}) == 0
    assert value(s, "hasten_job_duration_seconds_bucket", {**labels, "le": str(BUCKETS_S[2])}) == 1
    assert value(s, "hasten_job_duration_seconds_sum", labels) == BUCKETS_S[2]
    metrics.flush()  # a second flush adds nothing
    assert parse(generate_latest(REGISTRY).decode())[("hasten_job_duration_seconds_sum", frozenset(labels.items()))] \
        == BUCKETS_S[2]  # fmt: skip


def test_a_worker_without_metrics_imports_no_metrics_library() -> None:
    code = (
        "import sys, src.settings, src.cli, src.runner.worker, src.runner.launch\n"
        "from src.settings import WorkerSettings\n"
        "assert WorkerSettings.metrics is None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prometheus_client', 'fastapi', 'uvicorn')))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "JOBS_REDIS_URL": "redis://127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@job(max_concurrency=1)
async def single(ctx: JobContext, seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_held_jobs_are_gauged_per_function(
    redis: ArqRedis, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    queue = _queue()
    client = JobClient(redis, codec, queue_name=queue)
    worker = running_worker([single], queue_name=queue, metrics=ENDPOINT)
    for _ in range(4):
        await client.enqueue(single, 30)

    async def read() -> Samples | None:
        s = await _scrape(worker)
        return s if value(s, "hasten_jobs_held", {"queue": queue, "function": "single"}) == 3 else None

    s = await wait_for(read, message="three jobs held behind the one running")
    assert value(s, "hasten_limit_running", {"queue": queue, "function": "single"}) == 1
    assert value(s, "hasten_queue_depth", {"queue": queue, "state": "held"}) == 3
    assert value(s, "hasten_queue_depth", {"queue": queue, "state": "deferred"}) == 0
