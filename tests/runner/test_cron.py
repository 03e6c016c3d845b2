from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from arq.connections import ArqRedis

from src.runner import CronEntryError, JobClient, cron
from src.runner import constants as k
from src.runner.scheduler import CronScheduler
from src.runner.worker import Worker
from tests.sample_jobs import add, echo

BERLIN = ZoneInfo("Europe/Berlin")


def test_five_and_six_fields_and_aliases() -> None:
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert cron("m", "*/15 * * * *", add, kwargs={"a": 1}).next_tick(start) == start + timedelta(minutes=15)
    assert cron("s", "*/10 * * * * *", add, kwargs={"a": 1}).next_tick(start) == start + timedelta(seconds=10)
    hourly = cron("h", "@hourly", add, kwargs={"a": 1})
    assert hourly.schedule == "0 * * * *"
    assert hourly.next_tick(start) == start + timedelta(hours=1)


def test_ticks_are_computed_in_the_entry_zone() -> None:
    entry = cron("berlin", "30 9 * * *", add, tz="Europe/Berlin", kwargs={"a": 1})
    tick = entry.next_tick(datetime(2026, 7, 1, 0, 0, tzinfo=UTC))
    assert tick == datetime(2026, 7, 1, 9, 30, tzinfo=BERLIN)
    assert tick.astimezone(UTC).hour == 7  # CEST is UTC+2


def test_job_id_and_marker_derive_from_the_tick() -> None:
    entry = cron("e", "* * * * *", add, kwargs={"a": 1})
    tick = datetime(2026, 1, 1, tzinfo=UTC)
    assert entry.job_id(tick) == "cron:e:1767225600000"
    assert entry.marker_key(tick) == k.CRON_TICK_KEY_PREFIX + "e:1767225600000"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "61 * * * *"}, "cron entry 'bad': invalid crontab '61 \\* \\* \\* \\*'"),
        ({"schedule": "* * *"}, "cron entry 'bad': invalid crontab"),
        ({"tz": "Mars/Olympus"}, "cron entry 'bad': unknown time zone 'Mars/Olympus'"),
        ({"kwargs": {"a": "x"}}, "cron entry 'bad': invalid arguments for add\\(\\): a: "),
        ({"kwargs": {}}, "cron entry 'bad': .*a: Field required"),
    ],
)
def test_invalid_entries_name_the_entry(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"schedule": "* * * * *", "tz": "UTC", "kwargs": {"a": 1}, **kwargs}
    with pytest.raises(CronEntryError, match=message):
        cron("bad", args.pop("schedule"), add, **args)  # type: ignore[arg-type]


def test_worker_refuses_entries_for_unregistered_jobs_and_duplicates(make_worker: Callable[..., Worker]) -> None:
    entry = cron("x", "* * * * *", echo, kwargs={"text": "hi"})
    with pytest.raises(CronEntryError, match="cron entry 'x': job 'echo' is not registered"):
        make_worker([add], cron_entries=[entry])
    with pytest.raises(CronEntryError, match="cron entry 'x' is defined twice"):
        make_worker([echo], cron_entries=[entry, entry])


async def test_two_schedulers_enqueue_each_tick_once(client: JobClient, redis: ArqRedis) -> None:
    entry = cron("every-second", "* * * * * *", add, kwargs={"a": 1})
    clock = [datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)]
    schedulers = [CronScheduler([entry], client, now=lambda: clock[0]) for _ in range(2)]
    clock[0] += timedelta(seconds=3)
    for s in schedulers:
        await s.enqueue_due()
    queued = sorted(m.decode() for m in await redis.zrange(k.default_queue_name, 0, -1))
    assert queued == [f"cron:every-second:{1767225601000 + i * 1000}" for i in range(3)]


async def test_worker_runs_cron_entries(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker([echo], cron_entries=[cron("ping", "* * * * * *", echo, kwargs={"text": "tick"})])
    for _ in range(300):
        results = await redis.keys(k.result_key_prefix + "cron:ping:*")
        if results:
            break
        await asyncio.sleep(0.01)
    assert results, "no cron tick ran within 3 s"
    job_id = results[0].decode().removeprefix(k.result_key_prefix)
    assert await client.handle(echo, job_id).result(timeout_s=1) == "tick"
