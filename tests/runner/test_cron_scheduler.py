"""The cron scheduler on a real Redis with an injected clock: exactly once, missed-run policies, DST, startup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from arq.connections import ArqRedis

from src.runner import Codec, JobClient, cron
from src.runner import constants as k
from src.runner.cron import CronEntry
from src.runner.cron_state import cron_states
from src.runner.scheduler import CronScheduler
from tests.sample_jobs import add, echo

BERLIN = ZoneInfo("Europe/Berlin")
NOON = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


class ClockStopped(Exception):
    pass


class Clock:
    """Time that moves only when the scheduler sleeps, so a day of ticks takes milliseconds."""

    def __init__(self, start: datetime, until: datetime | None = None) -> None:
        self.t = start.astimezone(UTC)  # arithmetic on a zone's datetimes is wall-clock arithmetic
        self.until = until

    def now(self) -> datetime:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        if self.until is not None and self.t > self.until:
            raise ClockStopped

    def scheduler(self, *entries: CronEntry, client: JobClient) -> CronScheduler:
        return CronScheduler(entries, client, now=self.now, sleep=self.sleep)


async def _queued_ticks(redis: ArqRedis, name: str) -> list[datetime]:
    """The ticks of ``name`` in the queue, as UTC times (from their job ids)."""
    ids = [m.decode() for m in await redis.zrange(k.default_queue_name, 0, -1)]
    ms = sorted(int(i.rsplit(":", 1)[1]) for i in ids if i.startswith(f"cron:{name}:") and "startup" not in i)
    return [datetime.fromtimestamp(m / 1000, UTC) for m in ms]


def _seconds(*offsets: int) -> list[datetime]:
    return [NOON + timedelta(seconds=s) for s in offsets]


async def test_two_schedulers_enqueue_each_tick_once(client: JobClient, redis: ArqRedis) -> None:
    entry = cron("every-second", "* * * * * *", add, kwargs={"a": 1})
    clock = Clock(NOON + timedelta(milliseconds=500))
    schedulers = [clock.scheduler(entry, client=client) for _ in range(2)]
    for s in schedulers:
        await s.join()
    clock.t += timedelta(seconds=3)
    for s in schedulers:
        assert await s.step() == NOON + timedelta(seconds=4)
    assert await _queued_ticks(redis, "every-second") == _seconds(1, 2, 3)
    [state] = await cron_states(redis)
    assert (state.last_tick, state.next_tick, state.enqueued) == (
        NOON + timedelta(seconds=3),
        NOON + timedelta(seconds=4),
        3,
    )


async def test_run_loop_enqueues_each_tick_when_due(client: JobClient, redis: ArqRedis) -> None:
    entry = cron("five-s", "*/5 * * * * *", add, kwargs={"a": 1})
    clock = Clock(NOON + timedelta(seconds=1), until=NOON + timedelta(seconds=21))
    with pytest.raises(ClockStopped):
        await clock.scheduler(entry, client=client).run()
    assert await _queued_ticks(redis, "five-s") == _seconds(5, 10, 15, 20)


@pytest.mark.parametrize(
    ("policy", "limits", "expected"),
    [
        ("skip", {}, []),
        ("latest", {}, [6]),
        ("all", {}, [2, 3, 4, 5, 6]),
        ("all", {"max_drift_s": 2.5}, [4, 5, 6]),  # at 6.5 s, ticks before 4 s are too old
        ("all", {"max_missed_runs": 2}, [5, 6]),  # the most recent ones
        ("latest", {"max_drift_s": 0.4}, []),  # the latest missed tick is 0.5 s old
        ("all", {"overlap": "skip"}, [6]),  # each would overlap the one before: only the latest runs
    ],
)
async def test_missed_ticks_follow_the_entry_policy(
    client: JobClient, redis: ArqRedis, policy: str, limits: dict[str, object], expected: list[int]
) -> None:
    entry = cron("m", "* * * * * *", add, kwargs={"a": 1}, missed=policy, **limits)  # type: ignore[arg-type]
    clock = Clock(NOON + timedelta(milliseconds=500))
    first = clock.scheduler(entry, client=client)
    await first.join()
    clock.t += timedelta(seconds=1)
    await first.step()  # tick 1 runs; then no worker is up for ticks 2..6
    await redis.delete(k.job_key_prefix + entry.job_id(NOON + timedelta(seconds=1)))  # and it finished
    clock.t += timedelta(seconds=5)
    second = clock.scheduler(entry, client=client)
    await second.join()
    assert await _queued_ticks(redis, "m") == _seconds(1, *expected)
    [state] = await cron_states(redis)
    assert state.missed_not_run == 5 - len(expected)
    clock.t += timedelta(milliseconds=500)
    await redis.delete(*[k.job_key_prefix + m.decode() for m in await redis.zrange(k.default_queue_name, 0, -1)])
    await second.step()  # from the join on, every tick runs (the runs before it have finished)
    assert (await _queued_ticks(redis, "m"))[-1] == NOON + timedelta(seconds=7)


async def test_a_first_start_has_missed_nothing(client: JobClient, redis: ArqRedis) -> None:
    entry = cron("new", "* * * * * *", add, kwargs={"a": 1}, missed="all")
    await Clock(NOON + timedelta(milliseconds=500)).scheduler(entry, client=client).join()
    assert await _queued_ticks(redis, "new") == []


async def test_ticks_missed_during_a_redis_outage_follow_the_policy(client: JobClient, redis: ArqRedis) -> None:
    """While Redis is unreachable the loop forgets its join; the next join treats the ticks since as missed."""
    entry = cron("outage", "* * * * * *", add, kwargs={"a": 1}, missed="latest")
    clock = Clock(NOON + timedelta(milliseconds=500))
    scheduler = clock.scheduler(entry, client=client)
    await scheduler.join()
    clock.t += timedelta(seconds=1)
    await scheduler.step()
    clock.t += timedelta(seconds=10)  # ticks 2..11 while the enqueue fails
    scheduler.joined = None  # what run() does on a connection error
    await scheduler.join()
    assert await _queued_ticks(redis, "outage") == _seconds(1, 11)


async def test_dst_in_berlin_fires_as_cronsim_defines(client: JobClient, redis: ArqRedis) -> None:
    """02:30 does not exist on the spring-forward day: it fires at 03:00 CEST. On the fall-back day 02:30
    happens twice: a daily entry fires once (the first), a half-hourly one at both."""
    days = [(datetime(2026, 3, 28, 12, tzinfo=BERLIN), "spring"), (datetime(2026, 10, 24, 12, tzinfo=BERLIN), "fall")]
    for start, name in days:
        daily = cron(name, "30 2 * * *", add, tz="Europe/Berlin", kwargs={"a": 1})
        half_hourly = cron(f"{name}-30m", "*/30 1-3 * * *", add, tz="Europe/Berlin", kwargs={"a": 1})
        clock = Clock(start, until=start + timedelta(days=2))
        with pytest.raises(ClockStopped):
            await clock.scheduler(daily, half_hourly, client=client).run()

    def utc(*hm: tuple[int, int, int, int]) -> list[datetime]:
        return [datetime(2026, mo, d, h, m, tzinfo=UTC) for mo, d, h, m in hm]

    assert await _queued_ticks(redis, "spring") == utc((3, 29, 1, 0), (3, 30, 0, 30))  # 03:00 CEST, 02:30 CEST
    assert await _queued_ticks(redis, "fall") == utc((10, 25, 0, 30), (10, 26, 1, 30))  # 02:30 CEST, 02:30 CET
    night = [t.astimezone(BERLIN) for t in await _queued_ticks(redis, "fall-30m")]
    assert [t.strftime("%H:%M%z") for t in night if t.day == 25] == [
        "01:00+0200", "01:30+0200", "02:00+0200", "02:30+0200", "02:00+0100", "02:30+0100", "03:00+0100",
        "03:30+0100",
    ]  # fmt: skip


@pytest.mark.parametrize("policy", ["skip", "latest"])
async def test_a_join_in_the_repeated_hour_sees_the_tick_missed_in_its_first_pass(
    client: JobClient, redis: ArqRedis, policy: str
) -> None:
    """02:45 on 2026-10-25 in Berlin is 00:45 UTC (CEST); a worker that starts at 02:10 CET (01:10 UTC, the
    hour's second pass) missed it: the policy decides, and the loop does not take it for a due tick."""
    entry = cron("nightly", "45 2 * * *", add, tz="Europe/Berlin", kwargs={"a": 1}, missed=policy)  # type: ignore[arg-type]
    clock = Clock(datetime(2026, 10, 24, 0, 40, tzinfo=UTC))
    first = clock.scheduler(entry, client=client)
    await first.join()
    clock.t = datetime(2026, 10, 24, 0, 45, 1, tzinfo=UTC)
    await first.step()  # 02:45 CEST on the 24th
    clock.t = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)
    second = clock.scheduler(entry, client=client)
    await second.join()
    assert await second.step() == datetime(2026, 10, 26, 1, 45, tzinfo=UTC)  # 02:45 CET
    ran = [datetime(2026, 10, 24, 0, 45, tzinfo=UTC)]
    if policy == "latest":
        ran.append(datetime(2026, 10, 25, 0, 45, tzinfo=UTC))
    assert await _queued_ticks(redis, "nightly") == ran
    [state] = await cron_states(redis)
    assert state.missed_not_run == (1 if policy == "skip" else 0)


async def test_run_at_startup_runs_once_for_workers_starting_together(client: JobClient, redis: ArqRedis) -> None:
    entry = cron("warm", "@daily", add, kwargs={"a": 1}, run_at_startup=True)
    clock = Clock(NOON)
    schedulers = [clock.scheduler(entry, client=client) for _ in range(3)]
    for s in schedulers:
        await s.join()
    await schedulers[0].join()  # a rejoin after an outage is not a start
    ids = [m.decode() for m in await redis.zrange(k.default_queue_name, 0, -1)]
    assert len(ids) == 1
    assert ids[0].startswith("cron:warm:startup-")


class PausingClock(Clock):
    """A clock whose process is paused (SIGSTOP, a VM pause) once, at ``pause_at``, for ``pause``."""

    def __init__(self, start: datetime, until: datetime, pause_at: datetime, pause: timedelta) -> None:
        super().__init__(start, until)
        self.pause_at, self.pause = pause_at, pause

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        if self.t >= self.pause_at and self.pause:
            self.t, self.pause = self.t + self.pause, timedelta(0)


@pytest.mark.parametrize(("policy", "during_pause"), [("skip", []), ("latest", [9])])
async def test_a_loop_that_wakes_far_too_late_treats_the_gap_as_missed(
    client: JobClient, redis: ArqRedis, policy: str, during_pause: list[int]
) -> None:
    entry = cron("minutely", "* * * * *", add, kwargs={"a": 1}, missed=policy)  # type: ignore[arg-type]
    start = NOON - timedelta(seconds=30)
    clock = PausingClock(start, until=NOON + timedelta(minutes=12), pause_at=NOON + timedelta(minutes=2),
                         pause=timedelta(minutes=7, seconds=30))  # fmt: skip
    with pytest.raises(ClockStopped):
        await clock.scheduler(entry, client=client).run()
    minutes = [int((t - NOON).total_seconds() // 60) for t in await _queued_ticks(redis, "minutely")]
    assert minutes == [0, 1, *during_pause, 10, 11, 12]  # tick 2 fell in the pause


async def test_one_entry_that_cannot_be_enqueued_holds_up_no_other(redis: ArqRedis, codec: Codec) -> None:
    client = JobClient(redis, codec, max_payload_bytes=200)
    too_big = cron("too-big", "* * * * * *", echo, kwargs={"text": "x" * 300})
    fine = cron("fine", "* * * * * *", add, kwargs={"a": 1})
    clock = Clock(NOON + timedelta(milliseconds=500))
    scheduler = clock.scheduler(too_big, fine, client=client)
    await scheduler.join()
    clock.t += timedelta(seconds=2)
    await scheduler.step()
    assert await _queued_ticks(redis, "fine") == _seconds(1, 2)
    assert await _queued_ticks(redis, "too-big") == []


async def test_the_table_is_registered_again_after_redis_lost_its_data(client: JobClient, redis: ArqRedis) -> None:
    entry = cron("daily", "@daily", add, kwargs={"a": 1})
    clock = Clock(NOON, until=NOON + timedelta(minutes=3))
    scheduler = clock.scheduler(entry, client=client)
    await scheduler.join()
    await redis.flushdb()  # a restart without persistence
    with pytest.raises(ClockStopped):
        await scheduler.run()  # asleep until tomorrow's tick, it still wakes every minute
    [state] = await cron_states(redis)
    assert (state.name, state.schedule, state.next_tick) == ("daily", "0 0 * * *", datetime(2026, 1, 2, tzinfo=UTC))
