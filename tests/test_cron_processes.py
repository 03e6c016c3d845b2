"""Cron across real worker processes: each tick exactly once through a kill, and missed ticks per policy."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter

import pytest
from arq.connections import ArqRedis

from src.runner import constants as k
from src.runner.cron_state import CronState, cron_states
from tests.conftest import StartWorker
from tests.waiting import wait_for

FLEET = "tests.cron_settings.FleetSettings"
MISSED = "tests.cron_settings.MissedSettings"


async def _ran_ticks(redis: ArqRedis) -> list[tuple[str, int, int]]:
    """(entry, tick ms, pid) of every run noted by ``note_tick``."""
    rows = [row.decode().split() for row in await redis.lrange("ticks", 0, -1)]
    return [(job_id.split(":")[1], int(job_id.rsplit(":", 1)[1]), int(pid)) for job_id, pid in rows]


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(timeout=15) == 0


async def _a_tick_just_finished(redis: ArqRedis) -> None:
    """Until a tick newer than the ones seen so far has run and its outcome is written: a kill right after it
    lands between ticks, not inside a run (a run cut short there would run again: at least once)."""
    seen = await redis.llen("ticks")

    async def finished() -> bool:
        rows = await redis.lrange("ticks", seen, -1)
        return bool(rows) and bool(await redis.exists(k.result_key_prefix + rows[-1].decode().split()[0]))

    await wait_for(finished, 20, interval_s=0.005, message="a new tick ran")


@pytest.mark.timeout(120)
async def test_three_workers_run_every_tick_exactly_once_through_a_kill_and_restart(
    redis: ArqRedis, start_process_worker: StartWorker
) -> None:
    workers = [start_process_worker(FLEET) for _ in range(3)]
    await _a_tick_just_finished(redis)  # the fleet is up (however long starting took on a loaded machine)
    await asyncio.sleep(25)
    await _a_tick_just_finished(redis)
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait()
    killed_ms = time.time() * 1000
    await asyncio.sleep(10)
    workers.append(start_process_worker(FLEET))
    restarted_ms = time.time() * 1000
    await asyncio.sleep(26)
    _stop(workers[0], workers[2], workers[3])

    ran = await _ran_ticks(redis)
    ticks = [tick for _, tick, _ in ran]
    duplicates = {tick: n for tick, n in Counter(ticks).items() if n > 1}
    assert not duplicates, f"ticks that ran more than once: {duplicates}"
    first, last = min(ticks), max(ticks)
    missing = sorted(set(range(first, last + 1000, 1000)) - set(ticks))
    assert not missing, f"ticks that never ran: {missing}"
    assert len(ticks) >= 58, f"only {len(ticks)} ticks in about 60 s"
    assert first < killed_ms - 20_000 and last > restarted_ms + 20_000, "ticks ran through the kill and restart"


async def _states(redis: ArqRedis) -> dict[str, CronState]:
    return {s.name: s for s in await cron_states(redis)}


async def test_missed_ticks_with_no_worker_up_follow_each_entry_policy(
    redis: ArqRedis, start_process_worker: StartWorker
) -> None:
    """Three entries every 2 s (missed = skip / latest / all); no worker for five of their ticks, then one starts."""
    worker = start_process_worker(MISSED)

    async def each_ran_a_tick() -> dict[str, CronState] | None:
        states = await _states(redis)
        return states if len(states) == 3 and all(s.last_status == "complete" for s in states.values()) else None

    await wait_for(each_ran_a_tick, 30, message="each entry ran a tick")
    _stop(worker)
    states = await _states(redis)
    last_ticks = {s.last_tick for s in states.values()}
    assert len(last_ticks) == 1, states
    [last] = last_ticks
    assert last is not None
    last_ms = int(last.timestamp() * 1000)
    # no worker for ticks last+2 s … last+10 s at least (more when the new worker is slow to start)
    await asyncio.sleep(max(last.timestamp() + 10.3 - time.time(), 0))
    worker = start_process_worker(MISSED)

    async def joined() -> tuple[list[tuple[str, int, int]], int] | None:
        """All runs so far, and the first tick after ``last`` that the skip entry ran: the new worker's first
        on-time tick. Once every entry ran that tick, the missed ticks before it have run (or not) too."""
        runs = await _ran_ticks(redis)
        on_time = [tick for name, tick, _ in runs if name == "missed-skip" and tick > last_ms]
        if on_time and sum(tick == min(on_time) for _, tick, _ in runs) == 3:
            return runs, min(on_time)
        return None

    runs, joined_ms = await wait_for(joined, 30, message="every entry ran its first on-time tick")
    _stop(worker)

    def missed_runs(entry: str) -> list[int]:
        return sorted(
            (tick - last_ms) // 1000 for name, tick, _ in runs if name == entry and last_ms < tick < joined_ms
        )

    missed = list(range(2, (joined_ms - last_ms) // 1000, 2))  # seconds after ``last``, of ticks nobody was up for
    assert len(missed) >= 5, (last_ms, joined_ms)
    assert missed_runs("missed-skip") == []
    assert missed_runs("missed-latest") == [missed[-1]]
    assert missed_runs("missed-all") == missed
    for name, state in (await _states(redis)).items():
        assert (
            state.missed_not_run
            == {"missed-skip": len(missed), "missed-latest": len(missed) - 1, "missed-all": 0}[name]
        )
