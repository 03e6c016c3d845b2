"""The reads behind both the pages and the API: the CLI's queries (``queue_stats``, ``list_jobs``,
``DeadLetters``, ``cron_states``, the worker registry) and its JSON rows, for one dashboard."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from .. import json_rows
from ..dlq import DeadJob, DeadLetters
from ..queue_admin import JOB_STATES, JobPage, JobState, find_jobs
from ..worker_registry import WorkerRecord, live_workers
from .state import DashboardState

#: rows per page of the jobs and dead-letter lists
PAGE_ROWS = 50


def state_of(request: Request) -> DashboardState:
    state: DashboardState = request.app.state.dashboard
    return state


def job_state(status: str | None) -> JobState | None:
    """The ``status`` filter, checked (422 if it is none of the states)."""
    if not status:
        return None
    if status not in JOB_STATES:
        raise HTTPException(422, f"status must be one of {', '.join(JOB_STATES)}")
    return status


async def jobs_page(
    state: DashboardState, queue: str | None, status: str | None, function: str | None, cursor: str | None,
    limit: int, prefix: str | None = None,
) -> JobPage:  # fmt: skip
    """A page of jobs from ``cursor`` (``find_jobs``: deep pages cost what the first does, filters are bounded
    scans that hand back where they stopped); 422 for a cursor that is not one."""
    client = await state.on_queue(queue)
    try:
        return await find_jobs(
            client.redis, client.codec.loads, client.queue_name, state=job_state(status), function=function or None,
            id_prefix=prefix or None, cursor=cursor or None, limit=limit,
        )  # fmt: skip
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


async def job_record(state: DashboardState, job_id: str, queue: str | None) -> tuple[dict[str, Any], DeadJob | None]:
    """``hasten inspect --json``'s record of the job and, when it is dead, its dead-letter record; 404 if neither."""
    client = await state.on_queue(queue)
    record = await json_rows.job_record(client, job_id)
    dead = await DeadLetters(client.redis, client.queue_name).get(job_id)
    if record["status"] == "not_found" and record["function"] is None and dead is None:
        raise HTTPException(404, f"no job {job_id!r} in queue {client.queue_name!r}")
    return record, dead


async def all_workers(state: DashboardState) -> list[WorkerRecord]:
    client = await state.on_queue(None)
    return [w for queue in await state.queues() for w in await live_workers(client.redis, queue)]


async def dead_page(
    state: DashboardState, queue: str | None, function: str | None, offset: int, limit: int
) -> tuple[int, list[DeadJob]]:
    """How many dead jobs the queue holds, and a page of them, newest first (of ``function``, when given: the
    filter reads the newest 500 at a time until it has ``limit``)."""
    client = await state.on_queue(queue)
    dlq = DeadLetters(client.redis, client.queue_name)
    total = await dlq.count()
    if not function:
        return total, await dlq.page(offset, limit)
    found: list[DeadJob] = []
    skip, start = offset, 0
    while len(found) < limit and (rows := await dlq.page(start, 500)):
        for dead in rows:
            if dead.function == function:
                if skip:
                    skip -= 1
                elif len(found) < limit:
                    found.append(dead)
        start += 500
    return total, found
