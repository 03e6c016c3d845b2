"""Each cron entry's state in Redis, for operators: what it is, when it last ticked, how its last run went.

One hash per entry (``jobs:cron:state:<name>``, the name after its queue's hash tag, if any: ``keyspace.py``) and a
set of those names. The worker writes the definition when
its scheduler starts (:func:`register`); the enqueue script writes each tick (last tick, next tick, the job
enqueued, ticks skipped as overlapping) and the finish script each run's end (status, duration), both in the
same Lua call as the job itself. :func:`cron_states` reads it all back for ``hasten cron`` and the dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from redis.asyncio import Redis

from . import constants as k
from .cron import CronEntry

#: where the entry's last enqueued job is now
RunPhase = Literal["queued", "running", "finished", "never"]


@dataclass(frozen=True, slots=True)
class CronState:
    name: str
    schedule: str
    tz: str
    job: str
    missed: str
    overlap: str
    last_tick: datetime | None
    next_tick: datetime | None
    #: the job of the last tick (or startup run) enqueued, and where it is now
    last_job_id: str | None
    phase: RunPhase
    #: the last finished run: ``complete``, ``failed``, ``aborted``, ``retrying`` or ``interrupted``
    last_status: str | None
    last_duration_ms: int | None
    last_finished: datetime | None
    enqueued: int
    skipped_overlap: int
    #: missed ticks the missed-run policy left out, at the last worker start or Redis recovery
    missed_not_run: int


async def register(redis: Redis, entries: Sequence[CronEntry], now: datetime) -> dict[str, datetime | None]:
    """Write each entry's definition and next tick; return each entry's last tick enqueued by any worker."""
    async with redis.pipeline(transaction=False) as pipe:
        for entry in entries:
            pipe.sadd(k.CRON_ENTRIES_KEY, entry.key_name)
            pipe.hset(entry.state_key, mapping={
                "schedule": entry.schedule, "tz": entry.tz.key, "job": entry.job.name, "missed": entry.missed,
                "overlap": entry.overlap, "next_tick": _ms(entry.next_tick(now)),
            })  # fmt: skip
            pipe.hget(entry.state_key, "last_tick")
        replies = await pipe.execute()
    return {entry.name: _time(replies[3 * i + 2]) for i, entry in enumerate(entries)}


async def note_missed(redis: Redis, entry: CronEntry, not_run: int) -> None:
    async with redis.pipeline(transaction=False) as pipe:  # a pipeline's commands are typed for asyncio
        pipe.hset(entry.state_key, "missed_not_run", str(not_run))
        await pipe.execute()


async def forget(redis: Redis, name: str) -> bool:
    """Drop an entry's state, e.g. of an entry taken out of the table; a worker still running it registers it
    again when it starts. ``name`` as listed (after its queue's hash tag, if any). True if there was a state.
    Not a transaction: the set of entries and the entry's state are in different slots of a cluster."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.srem(k.CRON_ENTRIES_KEY, name)
        pipe.delete(k.CRON_STATE_KEY_PREFIX + name)
        removed, deleted = await pipe.execute()
    return bool(removed or deleted)


async def _entry_states(redis: Redis) -> tuple[list[str], list[dict[str, str]]]:
    """The names of the entries any worker registered, sorted, and each one's state hash; two round trips."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.smembers(k.CRON_ENTRIES_KEY)
        [members] = await pipe.execute()
    names = sorted(n.decode() for n in members)
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(k.CRON_STATE_KEY_PREFIX + name)
        hashes: list[dict[bytes, bytes]] = await pipe.execute()
    return names, [{key.decode(): value.decode() for key, value in h.items()} for h in hashes]


@dataclass(frozen=True, slots=True)
class CronSuccess:
    """An entry's last successful run (the ``hasten_cron_last_success_timestamp_seconds`` gauge)."""

    entry: str
    #: the job the entry runs (the gauge's ``function`` label)
    function: str
    at_s: float


async def cron_successes(redis: Redis) -> list[CronSuccess]:
    """Each cron entry's last successful run, for entries that had one."""
    names, fields = await _entry_states(redis)
    return [
        CronSuccess(name, f.get("job", "?"), int(f["last_success_ms"]) / 1000)
        for name, f in zip(names, fields, strict=True)
        if "last_success_ms" in f
    ]


async def cron_states(redis: Redis) -> list[CronState]:
    """Every entry any worker registered, by name."""
    names, fields = await _entry_states(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for f in fields:
            job_id = f.get("last_job_id", "")
            pipe.exists(k.in_progress_key_prefix + job_id)
            pipe.exists(k.job_key_prefix + job_id)
        found = await pipe.execute()
    states = []
    for i, (name, f) in enumerate(zip(names, fields, strict=True)):
        running, queued = found[2 * i], found[2 * i + 1]
        phase: RunPhase = (
            "never" if "last_job_id" not in f else "running" if running else "queued" if queued else "finished"
        )
        states.append(CronState(
            name, f.get("schedule", "?"), f.get("tz", "?"), f.get("job", "?"), f.get("missed", "?"),
            f.get("overlap", "?"), _time(f.get("last_tick")), _time(f.get("next_tick")), f.get("last_job_id"),
            phase, f.get("last_status"), _int(f.get("last_duration_ms")), _time(f.get("last_finished_ms")),
            _int(f.get("enqueued")) or 0, _int(f.get("skipped_overlap")) or 0, _int(f.get("missed_not_run")) or 0,
        ))  # fmt: skip
    return states


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _int(raw: str | bytes | None) -> int | None:
    """A number of the state hash; None when absent or not a number (a hash edited by hand is no reason to fail)."""
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def _time(raw: str | bytes | None) -> datetime | None:
    ms = _int(raw)
    try:
        return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):  # out of the platform's range
        return None
