from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from arq.connections import ArqRedis

from src.runner import CronEntryError, JobClient, cron
from src.runner import constants as k
from src.runner.cron_state import CronState, cron_states
from src.runner.worker import Worker
from tests.sample_jobs import add, echo, refuse, timed_nap
from tests.waiting import wait_for

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
        ({"name": "a b"}, "cron entry 'a b': names are 1-100 letters"),
        ({"missed": "some"}, "cron entry 'bad': missed='some': use one of skip, latest, all"),
        ({"overlap": "queue"}, "cron entry 'bad': overlap='queue': use one of allow, skip"),
        ({"max_drift_s": -1}, "cron entry 'bad': max_drift_s=-1 must be a number of seconds >= 0"),
        ({"max_drift_s": float("inf")}, "cron entry 'bad': max_drift_s=inf must be"),
        ({"max_missed_runs": 0}, "cron entry 'bad': max_missed_runs=0 must be >= 1"),
    ],
)
def test_invalid_entries_name_the_entry(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "bad", "schedule": "* * * * *", "tz": "UTC", "kwargs": {"a": 1}, **kwargs}
    with pytest.raises(CronEntryError, match=message):
        cron(args.pop("name"), args.pop("schedule"), add, **args)  # type: ignore[arg-type]


def test_worker_refuses_entries_for_unregistered_jobs_and_duplicates(make_worker: Callable[..., Worker]) -> None:
    entry = cron("x", "* * * * *", echo, kwargs={"text": "hi"})
    with pytest.raises(CronEntryError, match="cron entry 'x': job 'echo' is not registered"):
        make_worker([add], cron_entries=[entry])
    with pytest.raises(CronEntryError, match="cron entry 'x' is defined twice"):
        make_worker([echo], cron_entries=[entry, entry])


async def test_worker_runs_cron_entries(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker([echo], cron_entries=[cron("ping", "* * * * * *", echo, kwargs={"text": "tick"})])
    results = await wait_for(lambda: redis.keys(k.result_key_prefix + "cron:ping:*"), message="a cron tick ran")
    job_id = results[0].decode().removeprefix(k.result_key_prefix)
    assert await client.handle(echo, job_id).result(timeout_s=1) == "tick"


async def _runs(redis: ArqRedis, entry: str) -> list[tuple[float, float]]:
    """(start, end) of each finished run of ``entry`` noted by ``timed_nap``, by start."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for row in await redis.lrange("runs", 0, -1):
        event, job_id, at = row.decode().split()
        if job_id.startswith(f"cron:{entry}:"):
            (starts if event == "start" else ends)[job_id] = float(at)
    return sorted((starts[j], ends.get(j, float("inf"))) for j in starts)


async def test_overlap_skip_leaves_out_ticks_while_the_previous_run_is_unfinished(
    redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    """A 2.5 s job every second: with ``skip`` runs never overlap, with ``allow`` they do."""
    entries = [
        cron(name, "* * * * * *", timed_nap, kwargs={"seconds": 2.5}, overlap=name.removeprefix("nap-"))  # type: ignore[arg-type]
        for name in ("nap-skip", "nap-allow")
    ]
    running_worker([timed_nap], cron_entries=entries)

    async def both_policies_showed() -> bool:
        """Enough runs that ``skip`` had ticks to leave out and ``allow`` had runs to overlap (about 6 s)."""
        allowing = await _runs(redis, "nap-allow")
        states = {s.name: s for s in await cron_states(redis)}
        return (
            len(await _runs(redis, "nap-skip")) >= 2
            and len(allowing) >= 4
            and any(next_start < end for (_, end), (next_start, _) in pairwise(allowing))
            and "nap-skip" in states
            and states["nap-skip"].skipped_overlap >= 3
        )

    await wait_for(both_policies_showed, 30, interval_s=0.1, message="runs of both entries")
    skipping = await _runs(redis, "nap-skip")
    assert len(skipping) >= 2
    assert all(end <= next_start for (_, end), (next_start, _) in pairwise(skipping))
    allowing = await _runs(redis, "nap-allow")
    assert len(allowing) >= 4
    assert any(next_start < end for (_, end), (next_start, _) in pairwise(allowing))
    states = {s.name: s for s in await cron_states(redis)}
    assert states["nap-skip"].skipped_overlap >= 3
    assert states["nap-allow"].skipped_overlap == 0


async def test_entry_state_shows_the_last_run(redis: ArqRedis, running_worker: Callable[..., Worker]) -> None:
    running_worker(
        [timed_nap, refuse],
        cron_entries=[
            cron("naps", "* * * * * *", timed_nap, kwargs={"seconds": 0.2}),
            cron("refusals", "* * * * * *", refuse, tz="Europe/Berlin"),
        ],
    )

    async def both_ran() -> dict[str, CronState] | None:
        states = {s.name: s for s in await cron_states(redis)}
        return states if all(s.last_status for s in states.values()) and len(states) == 2 else None

    states = await wait_for(both_ran, message="both entries ran")
    naps, refusals = states["naps"], states["refusals"]
    assert (naps.schedule, naps.tz, naps.job, naps.missed, naps.overlap) == (
        "* * * * * *",
        "UTC",
        "timed_nap",
        "skip",
        "allow",
    )
    assert naps.last_status == "complete"
    assert naps.last_duration_ms is not None and 200 <= naps.last_duration_ms < 1000
    assert naps.last_tick is not None and naps.next_tick == naps.last_tick + timedelta(seconds=1)
    assert naps.last_finished is not None and naps.last_finished > naps.last_tick
    assert refusals.last_status == "failed"
    assert refusals.tz == "Europe/Berlin"


async def test_a_job_whose_id_merely_starts_with_cron_finishes(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([add])
    odd = await client.enqueue(add.options(job_id="cron:backup"), 1)
    assert await odd.result(timeout_s=5) == 2
    assert await (await client.enqueue(add, 2)).result(timeout_s=5) == 3


def test_six_field_schedules_match_the_wall_clock_across_dst() -> None:
    entry = cron("s", "0 30 2 * * *", add, tz="Europe/Berlin", kwargs={"a": 1})
    spring = entry.ticks_after(datetime(2026, 3, 28, 12, tzinfo=BERLIN))
    assert [next(spring).astimezone(BERLIN).day for _ in range(2)] == [30, 31]  # none on the 29th
    autumn = entry.ticks_after(datetime(2026, 10, 24, 12, tzinfo=BERLIN))
    assert [next(autumn) for _ in range(2)] == [  # twice on the 25th: 02:30 CEST and 02:30 CET
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    ]
