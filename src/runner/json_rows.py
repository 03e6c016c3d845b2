"""The JSON rows of what ``hasten … --json`` prints and the dashboard's API returns: one builder per kind, so
the two never disagree.

Nothing secret is in a row: a dead job's original payload (``payload_b64``, not redacted) is left out, and job
arguments shown come redacted (URL credentials and query values).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

from arq.jobs import DeserializationError, JobStatus

from . import constants as k
from .client import JobClient
from .cron_state import CronState
from .dlq import DeadJob
from .durations import FunctionDurations
from .errors import JobsError
from .handle import JobInfo
from .limits import LimitRow
from .queue_admin import QueuedJob
from .queue_stats import QueueStats
from .redact import redact_text, redact_value
from .worker_registry import WorkerRecord, live_workers
from .workflow_ids import step_of
from .workflow_info import WorkflowInfo, read_workflow


def stats_row(stats: QueueStats, durations: dict[str, FunctionDurations] | None = None) -> dict[str, Any]:
    """A queue's counts, rates (last 5 minutes), minutes, workers and, given, try durations per function over the
    last hour (``hasten status --json``)."""
    return {
        "queue": stats.queue, "queued": stats.queued, "running": stats.running, "deferred": stats.deferred,
        "retrying": stats.retrying, "held": stats.held, "dead": stats.dead, "oldest_due_age_s": stats.oldest_due_age_s,
        "paused_since_ms": stats.paused_since_ms, "counts_estimated": stats.estimated,
        "throughput_per_s": stats.throughput_per_s(), "failure_rate": stats.failure_rate(),
        "minutes": [asdict(m) for m in stats.minutes],
        "workers": [worker_row(w) for w in stats.workers],
        "durations": {function: d._asdict() for function, d in (durations or {}).items()},
    }  # fmt: skip


def limit_row(queue: str, row: LimitRow) -> dict[str, Any]:
    """A limited function of a queue, or one key of its per-key limit (``hasten limits --json``, the dashboard)."""
    limit, declared = row.limit, row.declared
    return {
        "queue": queue, "function": row.function, "key": row.key, "max_concurrency": limit.max_concurrency,
        "rate": None if limit.rate is None else str(limit.rate),
        "declared": None if declared is None else {"max_concurrency": declared.max_concurrency,
                                                  "rate": None if declared.rate is None else str(declared.rate)},
        "running": row.running, "held": row.held,
    }  # fmt: skip


def worker_row(worker: WorkerRecord) -> dict[str, Any]:
    return {
        **asdict(worker),
        "load": worker.load,
        "uptime_s": worker.uptime_s,
        "heartbeat_age_s": age_s(worker.heartbeat_ms),
    }


def queued_job_row(job: QueuedJob) -> dict[str, Any]:
    """A job waiting or running in a queue (``hasten jobs list --json``)."""
    return asdict(job)


def dead_row(dead: DeadJob) -> dict[str, Any]:
    """A dead job's record without the payload a requeue sends (``hasten dlq list/show --json``)."""
    return {key: value for key, value in asdict(dead).items() if key != "payload_b64"}


def cron_row(state: CronState) -> dict[str, Any]:
    """A cron entry's state, times in ISO 8601 (``hasten cron --json``)."""
    return {key: plain(value) for key, value in asdict(state).items()}


def workflow_row(info: WorkflowInfo) -> dict[str, Any]:
    """A workflow's graph: its status and error, and each step's function, status, job id, inputs (``after``: the
    steps it takes its input from) and result (``hasten workflow --json``)."""
    steps = [{**asdict(step), "after": list(step.after)} for step in info.steps]
    return {**{field: plain(value) for field, value in asdict(info).items()}, "steps": steps}


async def read_workflow_row(client: JobClient, workflow_id: str) -> dict[str, Any]:
    """:func:`workflow_row` of ``workflow_id`` (:class:`JobNotFound` if its state is gone); a result this client
    cannot verify is left out, with why."""
    info = await read_workflow(client.redis, client.codec, workflow_id, client.queue_name, strict=False)
    return workflow_row(info)


async def job_record(client: JobClient, job_id: str) -> dict[str, Any]:
    """Everything known about one job in the client's queue, with the worker holding it and its lease
    (``hasten inspect --json``); ``status`` is ``not_found`` and ``function`` None when there is no such job.

    Arguments and errors come with URL credentials and query values redacted (what a job received is in its
    payload). A payload this client cannot read (another codec, unsigned, altered) is reported as such.
    """
    try:
        info = await client.info(job_id)
    except (DeserializationError, JobsError, ValueError) as e:
        info = JobInfo(job_id, JobStatus.not_found, None, {}, None, None, error=f"unreadable job: {e}")
        status = "unreadable"
    else:
        status = info.status.value
    holder, lease_ms = await lease(client, job_id)
    record = {key: plain(value) for key, value in asdict(info).items()}
    record["kwargs"] = redact_value(record["kwargs"])
    record["error"] = None if info.error is None else redact_text(info.error)
    record["try_errors"] = [
        {**e, "message": redact_text(str(e.get("message", "")))} if isinstance(e, dict) else {"message": repr(e)}
        for e in record["try_errors"]
    ]
    record["status"] = status
    record["queue"] = client.queue_name
    record["worker"] = holder
    record["lease_left_s"] = None if lease_ms is None else lease_ms / 1000
    if holder is not None:
        for w in await live_workers(client.redis, client.queue_name):
            if w.worker_id == holder:
                record["worker_host"], record["worker_pid"] = w.host, w.pid
    step = step_of(job_id)
    record["workflow_id"], record["workflow_step"] = step if step is not None else (None, None)
    return record


async def lease(client: JobClient, job_id: str) -> tuple[str | None, int | None]:
    """The worker id holding ``job_id``'s lease and the lease's milliseconds left (None, None: not running)."""
    async with client.redis.pipeline(transaction=False) as pipe:
        pipe.get(k.in_progress_key_prefix + job_id)
        pipe.pttl(k.in_progress_key_prefix + job_id)
        holder, ttl_ms = await pipe.execute()
    if holder is None:
        return None, None
    return holder.decode(errors="replace"), ttl_ms if ttl_ms >= 0 else None


def plain(value: Any) -> Any:
    """A value as JSON has it: datetimes in ISO 8601, tuples as lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


def age_s(epoch_ms: int) -> float:
    return max(0.0, time.time() - epoch_ms / 1000)
