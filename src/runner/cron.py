"""Cron entries: which job runs when, as crontab text in a time zone.

``cron(name, "*/5 * * * *", job, tz="Europe/Berlin", kwargs={...})`` validates everything at once (crontab
text, zone, arguments against the job's signature) and raises :class:`CronEntryError` naming the entry, so a
bad table stops the worker at start instead of failing silently at the first tick. Schedules are evaluated
by cronsim: 5 fields, or 6 with seconds first, plus the ``@hourly``-style aliases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .constants import CRON_TICK_KEY_PREFIX
from .errors import ArgumentsInvalid, CronEntryError
from .job import JobSpec

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True, slots=True)
class CronEntry:
    """One line of the schedule table. Build it with :func:`cron`."""

    name: str
    schedule: str
    job: JobSpec[Any, Any]
    tz: ZoneInfo
    #: the job's arguments, validated and in their JSON form
    kwargs: dict[str, Any] = field(default_factory=dict)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), in the entry's zone."""
        return next(CronSim(ALIASES.get(self.schedule, self.schedule), after.astimezone(self.tz)))

    def job_id(self, tick: datetime) -> str:
        """The same id for the same tick on every worker, so a tick is one job."""
        return f"cron:{self.name}:{int(tick.timestamp() * 1000)}"

    def marker_key(self, tick: datetime) -> str:
        return f"{CRON_TICK_KEY_PREFIX}{self.name}:{int(tick.timestamp() * 1000)}"


def cron(
    name: str, schedule: str, job: JobSpec[Any, Any], *, tz: str = "UTC", kwargs: dict[str, Any] | None = None
) -> CronEntry:
    """A validated :class:`CronEntry`; any problem raises :class:`CronEntryError` naming the entry."""
    expression = ALIASES.get(schedule.strip(), schedule.strip())
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronEntryError(f"cron entry {name!r}: unknown time zone {tz!r} (use an IANA name)") from None
    try:
        CronSim(expression, datetime.now(zone))
    except CronSimError as e:
        raise CronEntryError(f"cron entry {name!r}: invalid crontab {schedule!r}: {e}") from None
    try:
        encoded = job.encode_args((), kwargs or {})
    except ArgumentsInvalid as e:
        raise CronEntryError(f"cron entry {name!r}: {e}") from None
    return CronEntry(name, expression, job, zone, encoded)


def check_table(entries: list[CronEntry], registered: set[str]) -> None:
    """Names are unique and every entry's job is one the worker runs."""
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise CronEntryError(f"cron entry {entry.name!r} is defined twice")
        seen.add(entry.name)
        if entry.job.name not in registered:
            raise CronEntryError(f"cron entry {entry.name!r}: job {entry.job.name!r} is not registered with the worker")
