"""The reads behind both the pages and the API: the CLI's queries (``queue_stats``, ``list_jobs``,
``DeadLetters``, ``cron_states``, the worker registry) and its JSON rows, for one dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import HTTPException, Query, Request

from .. import human, json_rows
from ..dlq import DeadJob, DeadLetters
from ..errors import JobNotFound
from ..limits import limit_rows
from ..queue_admin import JOB_STATES, JobPage, JobState, find_jobs
from ..worker_registry import WorkerRecord, live_workers
from .bulk import BulkOp, read_op
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


@dataclass
class JobFilters:
    """The jobs list's filters as the page's form and the API's query string give them; ``from`` and ``to`` bound
    the due time as ``hasten jobs list --from/--to`` does (an ISO time, UTC unless it says, or epoch ms)."""

    queue: str = ""
    status: str = ""
    function: str = ""
    prefix: str = ""
    due_from: Annotated[str, Query(alias="from")] = ""
    due_to: Annotated[str, Query(alias="to")] = ""
    cursor: str = ""

    @property
    def query(self) -> dict[str, str]:
        """The filters (not the cursor) as a query string's fields, for links to other pages of the same list."""
        return {
            "queue": self.queue, "status": self.status, "function": self.function, "prefix": self.prefix,
            "from": self.due_from, "to": self.due_to,
        }  # fmt: skip

    @property
    def narrows(self) -> bool:
        """Whether a filter other than the queue is set."""
        return any(value for name, value in self.query.items() if name != "queue")


def _due_ms(text: str, name: str) -> int | None:
    try:
        return human.moment_ms(text.strip()) if text.strip() else None
    except ValueError as e:
        raise HTTPException(422, f"{name} {e}") from None


async def jobs_page(state: DashboardState, filters: JobFilters, limit: int) -> JobPage:
    """A page of jobs from the filters' cursor (``find_jobs``: deep pages cost what the first does, filters are
    bounded scans that hand back where they stopped); 422 for a cursor, a status or a time that is not one."""
    client = await state.on_queue(filters.queue or None)
    try:
        return await find_jobs(
            client.redis, client.codec.loads, client.queue_name, state=job_state(filters.status),
            function=filters.function or None, id_prefix=filters.prefix or None, cursor=filters.cursor or None,
            due_from_ms=_due_ms(filters.due_from, "from"), due_to_ms=_due_ms(filters.due_to, "to"), limit=limit,
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


async def workflow(state: DashboardState, workflow_id: str) -> dict[str, Any]:
    """``hasten workflow --json``'s row of the workflow; 404 when its state is gone (or it never was)."""
    client = await state.on_queue(None)
    try:
        return await json_rows.read_workflow_row(client, workflow_id)
    except JobNotFound as e:
        raise HTTPException(404, str(e)) from None


async def workflow_of(state: DashboardState, record: dict[str, Any]) -> dict[str, Any] | None:
    """The workflow a job's record names (``workflow_id``: a step's), if any and still there."""
    if record.get("workflow_id") is None:
        return None
    try:
        return await workflow(state, record["workflow_id"])
    except HTTPException:
        return None


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


async def bulk_op(state: DashboardState, op_id: str) -> BulkOp:
    """A bulk operation's progress, whichever process runs it; 404 when there is none."""
    op = await read_op((await state.client()).redis, op_id)
    if op is None:
        raise HTTPException(404, "no such operation (one is kept an hour after its last progress)")
    return op


async def all_limits(state: DashboardState) -> list[dict[str, Any]]:
    """The limits of every queue, with running and held jobs (``hasten limits --json`` rows, queue by queue)."""
    client = await state.client()
    return [json_rows.limit_row(q, row) for q in await state.queues() for row in await limit_rows(client.redis, q)]
