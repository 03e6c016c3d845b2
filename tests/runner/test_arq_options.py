"""An arq app's settings under our worker behave as under arq: each scenario runs on stock arq's ``Worker`` and ours,
against the real test Redis, and must end the same way (or, for options we refuse, fail at start with a message)."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable
from datetime import timedelta, timezone
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import arq
import arq.worker
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job
from arq.worker import Retry, RetryJob
from arq.worker import Worker as ArqWorker

from src.runner import Codec, JobClient, JobFailed
from src.runner.arq_cron import entries_from_arq
from src.runner.errors import SettingsInvalid
from src.runner.worker import Worker
from tests.conftest import TEST_POLL_DELAY_S
from tests.sample_jobs import add

Build = Callable[..., ArqWorker]


async def plain_add(ctx: dict[str, Any], a: int, b: int = 1) -> int:
    return a + b


tries: dict[str, int] = {}


async def asks_retry(ctx: dict[str, Any], how: str) -> str:
    """Asks for a retry on its first try; succeeds on the second."""
    tries[ctx["job_id"]] = ctx["job_try"]
    if ctx["job_try"] == 1:
        raise Retry(defer=0) if how == "Retry" else RetryJob()
    return f"try {ctx['job_try']}"


async def cancels_itself(ctx: dict[str, Any]) -> str:
    """Raises CancelledError itself on its first try (a library's own timeout, say)."""
    if ctx["job_try"] == 1:
        raise asyncio.CancelledError("the library gave up")
    return f"try {ctx['job_try']}"


async def sleeps(ctx: dict[str, Any], seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


async def fails(ctx: dict[str, Any]) -> None:
    raise ValueError("boom")


@pytest.fixture(params=["arq", "ours"])
async def build(request: pytest.FixtureRequest, redis_settings: RedisSettings) -> AsyncIterator[Build]:
    """A burst worker of either kind on the test Redis, with our codec unless the test gives a serializer pair."""
    built: list[ArqWorker] = []

    def make(functions: list[Any], **kwargs: Any) -> ArqWorker:
        kwargs.setdefault("poll_delay", TEST_POLL_DELAY_S)
        kwargs.setdefault("burst", True)
        if "job_serializer" not in kwargs:
            codec = Codec()
            kwargs.update(job_serializer=codec.dumps, job_deserializer=codec.loads)
        kind: type[ArqWorker] = ArqWorker if request.param == "arq" else Worker
        worker = kind(functions, redis_settings=redis_settings, handle_signals=False, **kwargs)
        built.append(worker)
        return worker

    yield make
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # stock arq's close() calls redis-py's deprecated close
        for worker in built:
            await worker.close()


async def run_burst(worker: ArqWorker, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        await worker.main()


async def test_plain_functions_func_and_dotted_paths(redis: ArqRedis, build: Build) -> None:
    functions = [plain_add, arq.worker.func(plain_add, name="add_twice"), "tests.runner.test_arq_options.sleeps"]
    worker = build(functions)
    jobs = [
        await redis.enqueue_job("plain_add", 1, 2),
        await redis.enqueue_job("add_twice", 5),
        await redis.enqueue_job("tests.runner.test_arq_options.sleeps", 0),
    ]
    await run_burst(worker)
    assert [await j.result(timeout=1) for j in jobs if j is not None] == [3, 6, "slept"]


async def test_job_hooks_run_at_arqs_points_with_arqs_ctx(redis: ArqRedis, build: Build) -> None:
    seen: list[tuple[str, str, bool]] = []

    def hook(name: str) -> Callable[[dict[str, Any]], Any]:
        async def record(ctx: dict[str, Any]) -> None:
            assert {"job_id", "job_try", "enqueue_time", "score", "redis"} <= set(ctx)
            ctx.setdefault("seen_by", []).append(name)  # the same ctx dict for all three, as in arq
            written = bool(await ctx["redis"].exists(f"arq:result:{ctx['job_id']}"))
            seen.append((name, ctx["job_id"], written))
            if name == "after_job_end":
                assert ctx["seen_by"] == ["on_job_start", "on_job_end", "after_job_end"]

        return record

    worker = build(
        [plain_add],
        on_job_start=hook("on_job_start"), on_job_end=hook("on_job_end"), after_job_end=hook("after_job_end"),
    )  # fmt: skip
    await redis.enqueue_job("plain_add", 1, _job_id="one")
    await run_burst(worker)
    assert seen == [("on_job_start", "one", False), ("on_job_end", "one", False), ("after_job_end", "one", True)]


def _tagged_dumps(data: dict[str, Any]) -> bytes:
    """A user's own serializer pair (as msgpack would be): not our envelope."""
    return b"TAG" + json.dumps(data, default=str).encode()


def _tagged_loads(raw: bytes) -> dict[str, Any]:
    assert raw.startswith(b"TAG")
    loaded: dict[str, Any] = json.loads(raw[3:])
    return loaded


async def test_users_serializer_pair(redis_settings: RedisSettings, redis: ArqRedis, build: Build) -> None:
    pool = await create_pool(redis_settings, job_serializer=_tagged_dumps, job_deserializer=_tagged_loads)
    try:
        worker = build([plain_add], job_serializer=_tagged_dumps, job_deserializer=_tagged_loads)
        job = await pool.enqueue_job("plain_add", 20, 22)
        assert job is not None
        await run_burst(worker)
        assert await job.result(timeout=1) == 42
        assert (await redis.get(f"arq:result:{job.job_id}")).startswith(b"TAG")
    finally:
        await pool.aclose()


@pytest.mark.parametrize("how", ["Retry", "RetryJob"])
async def test_retry_and_retry_job_run_again(redis: ArqRedis, build: Build, how: str) -> None:
    worker = build([asks_retry])
    job = await redis.enqueue_job("asks_retry", how)
    assert job is not None
    await run_burst(worker)
    assert await job.result(timeout=1) == "try 2"


async def test_a_jobs_own_cancelled_error_runs_it_again(redis: ArqRedis, build: Build) -> None:
    worker = build([cancels_itself])
    job = await redis.enqueue_job("cancels_itself")
    assert job is not None
    await run_burst(worker)
    assert await job.result(timeout=1) == "try 2"


async def test_retry_jobs_false_fails_a_job_that_cancels_itself(redis: ArqRedis, build: Build) -> None:
    worker = build([cancels_itself], retry_jobs=False)
    job = await redis.enqueue_job("cancels_itself")
    assert job is not None
    await run_burst(worker)
    with pytest.raises((JobFailed, asyncio.CancelledError)):
        await job.result(timeout=1)


async def test_retry_jobs_false_fails_a_retry(redis: ArqRedis, build: Build) -> None:
    worker = build([asks_retry], retry_jobs=False)
    job = await redis.enqueue_job("asks_retry", "Retry")
    assert job is not None
    await run_burst(worker)
    with pytest.raises(JobFailed, match="Retry"):
        await job.result(timeout=1)
    assert tries[job.job_id] == 1


async def test_allow_abort_jobs_false_runs_the_job_to_its_end(redis: ArqRedis, build: Build) -> None:
    worker = build([sleeps], allow_abort_jobs=False)
    job = await redis.enqueue_job("sleeps", 0.6)
    assert job is not None
    running = asyncio.create_task(run_burst(worker))
    while (await job.status()).value != "in_progress":
        await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):  # arq's Job.abort waits for an abort that does not come
        await job.abort(timeout=0.2, poll_delay=0.01)
    await running
    assert await job.result(timeout=1) == "slept"


async def test_final_failures_are_logged_at_error_with_the_job(
    redis: ArqRedis, build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    worker = build([fails])
    await redis.enqueue_job("fails", _job_id="doomed")
    with caplog.at_level(logging.INFO):
        await run_burst(worker)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "doomed" in r.getMessage()]
    assert errors and errors[0].exc_info is not None
    if isinstance(worker, Worker):  # arq puts no job in extra; ours does, for error trackers
        assert {errors[0].job_id, errors[0].function, errors[0].job_try, errors[0].queue} == {  # type: ignore[attr-defined]
            "doomed",
            "fails",
            1,
            "arq:queue",
        }


async def test_health_check_interval_0_is_no_hot_loop(redis: ArqRedis, build: Build) -> None:
    worker = build([plain_add], burst=False, poll_delay=0.5, health_check_interval=0)
    running = asyncio.create_task(worker.main())
    await asyncio.sleep(0.2)
    before = (await redis.info("stats"))["total_commands_processed"]
    await asyncio.sleep(1)
    after = (await redis.info("stats"))["total_commands_processed"]
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert after - before < 50  # a hot loop makes thousands


async def test_poll_delay_0_idles_without_a_hot_loop(redis: ArqRedis, running_worker: Callable[..., Worker]) -> None:
    running_worker([plain_add], poll_delay=0)
    await asyncio.sleep(0.2)
    before = (await redis.info("stats"))["total_commands_processed"]
    await asyncio.sleep(1)
    after = (await redis.info("stats"))["total_commands_processed"]
    assert after - before < 1500  # stock arq polls without pause: ~12,000 a second here, ours did ~70,000
    job = await redis.enqueue_job("plain_add", 1)  # a plain arq producer pushes no wake-up token
    assert job is not None
    assert await job.result(timeout=1, poll_delay=0.01) == 2


async def test_poll_delay_0_retries_without_a_pause(redis: ArqRedis, build: Build) -> None:
    worker = build([asks_retry], poll_delay=0)
    job = await redis.enqueue_job("asks_retry", "Retry")
    assert job is not None
    started = time.monotonic()
    await run_burst(worker)
    assert await job.result(timeout=1) == "try 2"
    assert time.monotonic() - started < 0.5


async def test_burst_returns_after_jobs_started_by_arqs_start_jobs(redis: ArqRedis, build: Build) -> None:
    worker = build([sleeps], poll_delay=0.5)
    jobs = [await redis.enqueue_job("sleeps", 0.3) for _ in range(3)]
    running = asyncio.create_task(run_burst(worker, 5))
    while worker._pool is None or (isinstance(worker, Worker) and worker._pickup is None):
        await asyncio.sleep(0.001)
    await worker.start_jobs([j.job_id.encode() for j in jobs if j is not None])
    await running  # within run_burst's bound
    assert [await j.result(timeout=1) for j in jobs if j is not None] == ["slept"] * 3
    if isinstance(worker, Worker):  # they ran in the registry of running jobs (with leases), not beside it
        assert worker.running.started == 3


cron_runs: list[str] = []


async def every_second(ctx: dict[str, Any]) -> None:
    cron_runs.append(ctx["job_id"])


async def test_arq_cron_jobs_run(redis: ArqRedis, build: Build) -> None:
    cron_runs.clear()
    worker = build([plain_add], burst=False, cron_jobs=[arq.cron(every_second, second=None)])
    running = asyncio.create_task(worker.main())
    deadline = time.monotonic() + 5
    while len(cron_runs) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert len(cron_runs) >= 2 and len(set(cron_runs)) == len(cron_runs)


async def test_arq_cron_jobs_run_once_across_our_workers(running_worker: Callable[..., Worker]) -> None:
    cron_runs.clear()
    for _ in range(3):
        running_worker([plain_add], cron_jobs=[arq.cron(every_second, second=None, max_tries=1)])
    await asyncio.sleep(2.6)
    assert len(cron_runs) >= 2
    assert sorted(set(cron_runs)) == sorted(cron_runs)  # each tick once, though three workers evaluate it


async def test_arq_cron_schedule_as_crontab() -> None:
    mondays_and_sundays = arq.cron(every_second, weekday={0, 6}, hour=3, minute={5, 35})
    [entry] = entries_from_arq([mondays_and_sundays], ZoneInfo("Europe/Berlin"))
    assert (entry.name, entry.schedule, entry.tz.key) == ("every_second", "0 5,35 3 * * 0,1", "Europe/Berlin")
    assert entry.job.name == "cron:every_second"
    [entry] = entries_from_arq([arq.cron(every_second, weekday="tues", run_at_startup=True)], None)
    assert (entry.schedule, entry.run_at_startup) == ("0 * * * * 2", True)


# our worker only ------------------------------------------------------------------------------------------


class ArqAppSettings:
    """An arq app's WorkerSettings."""

    functions: ClassVar[list[Any]] = [plain_add]
    burst = True
    max_jobs = 3
    handle_signals = False


async def test_worker_signature_spells_arqs_parameters(redis_settings: RedisSettings) -> None:
    accepted = set(inspect.signature(Worker).parameters)
    assert set(inspect.signature(ArqWorker).parameters) <= accepted
    assert {"cron_entries", "codec", "shutdown_grace_s"} <= accepted
    # built the way arq's get_kwargs/create_worker build one
    settings = {**ArqAppSettings.__dict__, "redis_settings": redis_settings}
    worker = Worker(**{key: value for key, value in settings.items() if key in accepted})
    assert worker.burst is True and worker.max_jobs == 3 and worker.redis_settings is redis_settings
    await worker.close()


@pytest.mark.parametrize(
    ("option", "value", "hint"),
    [
        ("job_completion_wait", 5, "shutdown_grace_s"),
        ("queue_read_limit", 10, "max_jobs"),
        ("cron_jobs", [arq.cron(plain_add, minute=1, unique=False)], "once across workers"),
        ("cron_jobs", [arq.cron(plain_add, minute=1, job_id="fixed")], "job id names the tick"),
        ("cron_jobs", [arq.cron(plain_add, day=1, weekday="mon")], "cron_entries"),
        ("timezone", timezone(timedelta(hours=2)), "IANA zone"),
    ],
)
async def test_unsupported_arq_options_are_refused(option: str, value: Any, hint: str) -> None:
    with pytest.raises(SettingsInvalid, match=f"{option}|cron job.*{hint}"):
        Worker([plain_add], handle_signals=False, **{option: value})


async def test_serializer_halves_come_together() -> None:
    with pytest.raises(SettingsInvalid, match="together"):
        Worker([plain_add], handle_signals=False, job_serializer=_tagged_dumps)


async def test_a_pickle_payload_is_refused_with_a_hint(
    redis: ArqRedis, redis_settings: RedisSettings, running_worker: Callable[..., Worker]
) -> None:
    """(``redis``: a flushed database, so the job id is free on each event loop the test runs on)"""
    pickling = await create_pool(redis_settings)  # a plain arq producer: pickle
    try:
        running_worker([plain_add])
        job = await pickling.enqueue_job("plain_add", 1, _job_id="pickled")
        assert job is not None
        reader = Job("pickled", pickling, _deserializer=Codec().loads)
        with pytest.raises(JobFailed, match=r"pickle.*job_serializer=Codec"):
            await reader.result(timeout=5, poll_delay=0.01)
    finally:
        await pickling.aclose()


@pytest.mark.parametrize("log_results", [True, False])
async def test_log_results_shows_results_in_the_per_job_line(
    redis: ArqRedis, build: Build, caplog: pytest.LogCaptureFixture, log_results: bool
) -> None:
    worker = build([plain_add], log_results=log_results)
    await redis.enqueue_job("plain_add", 20, 22, _job_id="sum")
    with caplog.at_level(logging.DEBUG):
        await run_burst(worker)
    lines = [r.getMessage() for r in caplog.records if "sum" in r.getMessage() and "←" in r.getMessage()]
    assert len(lines) == 1 and ("● 42" in lines[0]) is log_results


async def test_job_hooks_run_for_typed_jobs_too(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    seen: list[tuple[str, int]] = []

    async def started(ctx: dict[str, Any]) -> None:
        seen.append((ctx["job_id"], ctx["job_try"]))

    running_worker([add], on_job_start=started)
    handle = await client.enqueue(add, 1, 2)
    assert await handle.result(timeout_s=5) == 3
    assert seen == [(handle.job_id, 1)]
