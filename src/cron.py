"""The schedule table: which job runs when.

Each entry: ``cron(name, crontab, job, tz=…, kwargs=…, missed=…, max_drift_s=…, overlap=…,
run_at_startup=…)``. Crontab text has 5 fields (minute hour day month weekday), or 6 with seconds first, or an
alias (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``). ``missed`` (``skip``, ``latest``,
``all``) says what happens to ticks missed while no worker was up; ``overlap="skip"`` leaves out a tick while
the previous run is unfinished. Entries are validated when this module is imported, so a mistake stops the
worker at start with the entry's name. Every worker evaluates the table; each tick is enqueued once (README,
"Periodic jobs").
"""

from __future__ import annotations

from src.jobs.maintenance import record_queue_health
from src.runner import CronEntry, cron

TABLE: list[CronEntry] = [
    cron("queue-health", "* * * * *", record_queue_health, tz="UTC"),
]
