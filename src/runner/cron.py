"""Cron entries: which job runs when, as crontab text in a time zone, and what to do about missed ticks.

``cron(name, "*/5 * * * *", job, tz="Europe/Berlin", kwargs={...}, missed="latest")`` validates everything at
once (name, crontab text, zone, policies, arguments against the job's signature) and raises
:class:`CronEntryError` naming the entry, so a bad table stops the worker at start instead of failing silently
at the first tick. Schedules are evaluated by cronsim: 5 fields, or 6 with seconds first, plus the
``@hourly``-style aliases. Across DST changes a 5-field tick in the gap fires at the first valid moment after
it and one in the repeated hour fires once (twice for schedules that run every hour or more often); 6-field
schedules match the wall clock as written (a tick in the gap does not fire, one in the repeated hour fires
twice).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from . import constants as k
from .errors import ArgumentsInvalid, CronEntryError
from .job import JobSpec
from .keyspace import hash_tag

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: ``skip``: missed ticks do not run; ``latest``: the most recent one runs; ``all``: each one runs
MissedPolicy = Literal["skip", "latest", "all"]
#: ``allow``: a tick runs even while the previous run is unfinished; ``skip``: such a tick does not run
OverlapPolicy = Literal["allow", "skip"]

#: missed ticks are counted back this many past ``max_missed_runs`` at most (an entry ticking every second,
#: down for a week, would otherwise take seconds to count)
MISSED_COUNTED_UP_TO = 1000

#: entry names become part of job ids and Redis keys (``cron:<name>:<tick ms>``)
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


@dataclass(frozen=True, slots=True)
class CronEntry:
    """One line of the schedule table. Build it with :func:`cron`."""

    name: str
    schedule: str
    job: JobSpec[Any, Any]
    tz: ZoneInfo
    #: the job's arguments, validated and in their JSON form
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: ticks missed while no worker was up (or Redis was unreachable)
    missed: MissedPolicy = "skip"
    #: for ``latest`` and ``all``: a missed tick older than this is not run
    max_drift_s: float = k.DEFAULT_CRON_MAX_DRIFT_S
    #: for ``all``: at most this many missed ticks run (the most recent ones)
    max_missed_runs: int = k.DEFAULT_CRON_MAX_MISSED_RUNS
    overlap: OverlapPolicy = "allow"
    #: enqueue one run when workers start (once for workers starting within ``CRON_STARTUP_WINDOW_MS``)
    run_at_startup: bool = False
    #: the hash tag of the queue the entry enqueues into (:meth:`for_queue`): its job ids, tick markers and state
    #: begin with it, so that they share the queue's slot
    key_tag: str = ""

    def for_queue(self, queue_name: str) -> CronEntry:
        """This entry enqueueing into ``queue_name`` (unless its job names a queue of its own)."""
        return replace(self, key_tag=hash_tag(self.job.enqueue_options.queue_name or queue_name))

    @property
    def key_name(self) -> str:
        """The entry's name in its job ids and keys, and in the set of entries: its name after its queue's tag."""
        return self.key_tag + self.name

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), in UTC."""
        return next(self.ticks_after(after))

    def ticks_after(self, after: datetime) -> Iterator[datetime]:
        """Ticks strictly after ``after``, in order, in UTC.

        Ticks are handed out in UTC because two datetimes of the same zone compare by wall time, ignoring
        ``fold``: in a repeated autumn hour 02:00 CET would count as before 02:30 CEST. And from a moment in
        the second pass of that hour, cronsim (which drops the fold) can yield a first-pass tick that is
        already past; comparing instants leaves it out."""
        after = after.astimezone(UTC)
        ticks = (tick.astimezone(UTC) for tick in CronSim(self.schedule, after.astimezone(self.tz)))
        return (tick for tick in ticks if tick > after)

    def missed_ticks(self, after: datetime, before: datetime) -> list[datetime]:
        """Ticks in (``after``, ``before``), most recent first, at most ``max_missed_runs`` +
        ``MISSED_COUNTED_UP_TO`` of them (walking back from ``before``, so a long outage costs nothing)."""
        found: list[datetime] = []
        backwards = CronSim(self.schedule, before.astimezone(self.tz), reverse=True)
        for tick in (tick.astimezone(UTC) for tick in islice(backwards, self.missed_cap)):
            if tick <= after:
                break
            found.append(tick)
        # the backward walk drops the fold of a repeated autumn hour and can step over a tick there; a
        # forward walk from the most recent tick found (or from ``after``) to ``before`` finds it
        for tick in self.ticks_after(found[0] if found else after):
            if tick >= before:
                break
            found.append(tick)
        return sorted(set(found), reverse=True)[: self.missed_cap]

    def missed_to_run(self, after: datetime | None, before: datetime, now: datetime) -> tuple[list[datetime], int]:
        """Of the ticks in (``after``, ``before``) that nobody enqueued, the ones the missed-run policy runs
        (oldest first), and how many it leaves out (counted up to ``MISSED_COUNTED_UP_TO``). With
        ``overlap="skip"`` at most one runs: each would be skipped as overlapping the one before."""
        if after is None:
            return [], 0  # never ran anywhere: nothing was missed
        wanted = {"skip": 0, "latest": 1, "all": self.max_missed_runs}[self.missed]
        if self.overlap == "skip":
            wanted = min(wanted, 1)
        oldest = now - timedelta(seconds=self.max_drift_s)
        missed = self.missed_ticks(after, before)
        to_run = [tick for tick in missed if tick >= oldest][:wanted]
        return to_run[::-1], len(missed) - len(to_run)

    @property
    def missed_cap(self) -> int:
        return self.max_missed_runs + MISSED_COUNTED_UP_TO

    def job_id(self, tick: datetime) -> str:
        """The same id for the same tick on every worker, so a tick is one job."""
        return f"{self.key_tag}cron:{self.name}:{int(tick.timestamp() * 1000)}"

    def marker_key(self, tick: datetime) -> str:
        return f"{k.CRON_TICK_KEY_PREFIX}{self.key_name}:{int(tick.timestamp() * 1000)}"

    def startup_job_id(self, now: datetime) -> str:
        return f"{self.key_tag}cron:{self.name}:startup-{int(now.timestamp() * 1000)}"

    @property
    def startup_marker_key(self) -> str:
        return f"{k.CRON_TICK_KEY_PREFIX}{self.key_name}:startup"

    @property
    def state_key(self) -> str:
        """Read by ``finish.lua`` as ``CRON_STATE_KEY_PREFIX`` + the tag and entry name of a cron job's id."""
        return k.CRON_STATE_KEY_PREFIX + self.key_name

    @property
    def marker_ttl_ms(self) -> int:
        """Tick markers outlive the drift within which a missed tick may still be enqueued."""
        return k.CRON_TICK_TTL_MS + int(self.max_drift_s * 1000)


def cron(
    name: str,
    schedule: str,
    job: JobSpec[Any, Any],
    *,
    tz: str = "UTC",
    kwargs: dict[str, Any] | None = None,
    missed: MissedPolicy = "skip",
    max_drift_s: float = k.DEFAULT_CRON_MAX_DRIFT_S,
    max_missed_runs: int = k.DEFAULT_CRON_MAX_MISSED_RUNS,
    overlap: OverlapPolicy = "allow",
    run_at_startup: bool = False,
) -> CronEntry:
    """A validated :class:`CronEntry`; any problem raises :class:`CronEntryError` naming the entry."""

    def invalid(why: str) -> CronEntryError:
        return CronEntryError(f"cron entry {name!r}: {why}")

    if not _NAME.fullmatch(name):
        raise invalid("names are 1-100 letters, digits, '_', '.' or '-' (they become part of job ids)")
    expression = ALIASES.get(schedule.strip(), schedule.strip())
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(f"unknown time zone {tz!r} (use an IANA name)") from None
    try:
        CronSim(expression, datetime.now(zone))
    except CronSimError as e:
        raise invalid(f"invalid crontab {schedule!r}: {e}") from None
    if missed not in get_args(MissedPolicy):
        raise invalid(f"missed={missed!r}: use one of {', '.join(get_args(MissedPolicy))}")
    if overlap not in get_args(OverlapPolicy):
        raise invalid(f"overlap={overlap!r}: use one of {', '.join(get_args(OverlapPolicy))}")
    if not 0 <= max_drift_s < math.inf:
        raise invalid(f"max_drift_s={max_drift_s!r} must be a number of seconds >= 0")
    if max_missed_runs < 1:
        raise invalid(f"max_missed_runs={max_missed_runs!r} must be >= 1")
    try:
        encoded = job.encode_args((), kwargs or {})
    except ArgumentsInvalid as e:
        raise invalid(str(e)) from None
    return CronEntry(
        name, expression, job, zone, encoded, missed, float(max_drift_s), max_missed_runs, overlap, run_at_startup
    )


def check_table(entries: list[CronEntry], registered: set[str]) -> None:
    """Names are unique and every entry's job is one the worker runs."""
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise CronEntryError(f"cron entry {entry.name!r} is defined twice")
        seen.add(entry.name)
        if entry.job.name not in registered:
            raise CronEntryError(f"cron entry {entry.name!r}: job {entry.job.name!r} is not registered with the worker")
