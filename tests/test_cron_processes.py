"""Cron across real worker processes: each tick exactly once through a kill, and missed ticks per policy."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter

import pytest
from arq.connections import ArqRedis

from src.runner.cron_state import CronState, cron_states
from tests.conftest import StartWorker

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


@pytest.mark.timeout(120)
async def test_three_workers_run_every_tick_exactly_once_through_a_kill_and_restart(
    redis: ArqRedis, start_process_worker: StartWorker
) -> None:
    workers = [start_process_worker(FLEET) for _ in range(3)]
    await asyncio.sleep(25)
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
    for _ in range(1000):  # until each entry has run a tick
        states = await _states(redis)
        if len(states) == 3 and all(s.last_status == "complete" for s in states.values()):
            break
        await asyncio.sleep(0.01)
    _stop(worker)
    states = await _states(redis)
    last_ticks = {s.last_tick for s in states.values()}
    assert len(last_ticks) == 1, states
    [last] = last_ticks
    assert last is not None
    last_ms = int(last.timestamp() * 1000)
    # no worker for ticks last+2 s … last+10 s; the next one starts well before last+12 s
    await asyncio.sleep(max(last.timestamp() + 10.3 - time.time(), 0))
    worker = start_process_worker(MISSED)
    for _ in range(1000):  # until the first on-time tick after the start has run everywhere
        runs = await _ran_ticks(redis)
        if sum(tick == last_ms + 12_000 for _, tick, _ in runs) == 3:
            break
        await asyncio.sleep(0.01)
    _stop(worker)

    def missed_runs(entry: str) -> list[int]:
        return sorted(
            (tick - last_ms) // 1000 for name, tick, _ in runs if name == entry and last_ms < tick < last_ms + 12_000
        )

    assert missed_runs("missed-skip") == []
    assert missed_runs("missed-latest") == [10]
    assert missed_runs("missed-all") == [2, 4, 6, 8, 10]
    for name, state in (await _states(redis)).items():
        assert state.missed_not_run == {"missed-skip": 5, "missed-latest": 4, "missed-all": 0}[name]
