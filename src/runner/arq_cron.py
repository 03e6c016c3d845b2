"""arq's ``cron_jobs=[arq.cron(...)]`` as our cron entries: each tick runs once across all workers.

An arq ``CronJob`` becomes a :class:`~src.runner.cron.CronEntry` with the same schedule as a 6-field crontab
(seconds first) in the worker's ``timezone`` (UTC by default), ``missed="skip"`` and ``overlap="allow"`` as arq
does. The job enqueued for a tick names the ``CronJob`` (``cron:<function>``), so our worker — and a stock arq
worker in a mixed fleet — runs the coroutine with arq's ctx; its ``timeout``, ``keep_result``,
``keep_result_forever`` and ``max_tries`` apply as under arq.

Departures: a tick fires on its second (arq adds ``microsecond``, 123 ms by default, to stay off the top of the
second); options that cannot be honoured are refused — ``unique=False`` (arq then runs the tick on every worker;
ours run it once), a fixed ``job_id``, and ``day`` with ``weekday`` together (arq needs both to match, crontab
either).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from arq.cron import CronJob
from arq.typing import WEEKDAYS

from .context import JobContext
from .cron import CronEntry, cron
from .errors import SettingsInvalid
from .job import job as job_decorator

_NOT_IN_ENTRY_NAMES = re.compile(r"[^A-Za-z0-9_.\-]")


def entries_from_arq(cron_jobs: Sequence[CronJob] | None, zone: tzinfo | None) -> list[CronEntry]:
    """Our cron entries for arq's ``cron_jobs``; :class:`SettingsInvalid` for an option we cannot honour."""
    tz = _zone_name(zone)
    return [_entry(cron_job, tz) for cron_job in cron_jobs or ()]


def _zone_name(zone: tzinfo | None) -> str:
    if zone is None or zone is UTC or zone == UTC:
        return "UTC"
    if isinstance(zone, ZoneInfo):
        return zone.key
    raise SettingsInvalid(
        f"timezone={zone!r}: give an IANA zone, timezone=ZoneInfo('Europe/Berlin') (a fixed offset has no DST rules)"
    )


def _entry(cron_job: CronJob, tz: str) -> CronEntry:
    name = cron_job.name
    if not isinstance(cron_job, CronJob):
        raise SettingsInvalid(f"cron_jobs holds {cron_job!r}: use arq.cron(...) (or our cron() in cron_entries)")
    if not cron_job.unique:
        raise SettingsInvalid(f"cron job {name!r}: unique=False is not supported, each tick runs once across workers")
    if cron_job.job_id is not None:
        raise SettingsInvalid(f"cron job {name!r}: job_id= is not supported, each tick's job id names the tick")
    if cron_job.day is not None and cron_job.weekday is not None:
        raise SettingsInvalid(
            f"cron job {name!r}: day and weekday together (arq runs when both match) cannot be a crontab; "
            "declare it with cron(name, '<crontab>', job) in cron_entries"
        )
    weekday = cron_job.weekday
    if isinstance(weekday, str):
        weekday = WEEKDAYS.index(weekday.lower())
    fields = [cron_job.second, cron_job.minute, cron_job.hour, cron_job.day, cron_job.month, _sunday_first(weekday)]
    schedule = " ".join(_field(value) for value in fields)
    entry_name = _NOT_IN_ENTRY_NAMES.sub("_", name.removeprefix("cron:"))[:100]
    return cron(entry_name, schedule, _enqueues(name), tz=tz, run_at_startup=cron_job.run_at_startup)


def _sunday_first(weekday: Any) -> Any:
    """arq counts weekdays from Monday = 0, crontab from Sunday = 0."""
    if weekday is None:
        return None
    if isinstance(weekday, int):
        return (weekday + 1) % 7
    return {(day + 1) % 7 for day in weekday}


def _field(value: Any) -> str:
    if value is None:
        return "*"
    if isinstance(value, int):
        return str(value)
    return ",".join(str(v) for v in sorted(value))


def _enqueues(name: str) -> Any:
    """A spec that only enqueues ``name`` with no arguments; the worker runs arq's ``CronJob`` of that name."""

    async def run_by_the_cron_job(ctx: JobContext) -> Any:  # pragma: no cover - never called
        raise RuntimeError(f"{name} runs as arq's CronJob")

    return job_decorator(name=name)(run_by_the_cron_job)
