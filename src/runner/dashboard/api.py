"""The JSON API behind the pages (OpenAPI at ``api/openapi.json``): the same rows as the CLI's ``--json``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from .. import json_rows, pausing
from ..constants import PRIORITY_MAX
from ..cron_state import cron_states
from ..dlq import DeadLetters
from ..errors import JobsError, RequeueRefused
from ..queue_stats import queue_stats
from . import reads
from .auth import require_access, require_same_origin
from .bulk import Action, BulkOp
from .state import DashboardState

router = APIRouter(prefix="/api", dependencies=[Depends(require_access)], tags=["read"])
actions = APIRouter(prefix="/api", dependencies=[Depends(require_access), Depends(require_same_origin)], tags=["act"])

Row = dict[str, Any]


@router.get("/queues")
async def queues(request: Request) -> list[Row]:
    """Each queue's counts, rates and workers (``hasten status --json``)."""
    state = reads.state_of(request)
    client = await state.client()
    return [json_rows.stats_row(await queue_stats(client.redis, q)) for q in await state.queues()]


@router.get("/jobs")
async def jobs(
    request: Request, response: Response, filters: Annotated[reads.JobFilters, Depends()],
    limit: int = Query(50, ge=1, le=1000),
) -> list[Row]:  # fmt: skip
    """Jobs in a queue by due time (``hasten jobs list --json``), filtered by queue, status, function, id prefix
    and due time (``from``, ``to``); the next page's cursor, if any, in the ``X-Next-Cursor`` header (as the
    command line prints it)."""
    found = await reads.jobs_page(reads.state_of(request), filters, limit)
    if found.cursor is not None:
        response.headers["X-Next-Cursor"] = found.cursor
    return [json_rows.queued_job_row(row) for row in found.jobs]


@router.get("/jobs/{job_id}")
async def job(request: Request, job_id: str, queue: str = "") -> Row:
    """Everything known about one job (``hasten inspect --json``), with its dead-letter record under ``dead``."""
    record, dead = await reads.job_record(reads.state_of(request), job_id, queue or None)
    return {**record, "dead": None if dead is None else json_rows.dead_row(dead)}


@router.get("/workflows/{workflow_id}")
async def workflow(request: Request, workflow_id: str) -> Row:
    """A workflow's graph: its status and error, each step's function, status, job id, inputs and result
    (``hasten workflow --json``)."""
    return await reads.workflow(reads.state_of(request), workflow_id)


@router.get("/dead-letters")
async def dead_letters(
    request: Request, queue: str = "", function: str = "", offset: int = Query(0, ge=0),
    limit: int = Query(20, ge=1, le=500),
) -> list[Row]:  # fmt: skip
    """Dead jobs, newest first (``hasten dlq list --json``)."""
    _total, rows = await reads.dead_page(reads.state_of(request), queue or None, function, offset, limit)
    return [json_rows.dead_row(d) for d in rows]


@router.get("/dead-letters/{job_id}")
async def dead_letter(request: Request, job_id: str, queue: str = "") -> Row:
    """One dead job's record (``hasten dlq show --json``)."""
    client = await reads.state_of(request).on_queue(queue or None)
    dead = await DeadLetters(client.redis, client.queue_name).get(job_id)
    if dead is None:
        raise HTTPException(404, f"no dead job {job_id!r}")
    return json_rows.dead_row(dead)


@router.get("/cron")
async def cron(request: Request) -> list[Row]:
    """Every cron entry's state (``hasten cron --json``)."""
    client = await reads.state_of(request).client()
    return [json_rows.cron_row(s) for s in await cron_states(client.redis)]


@router.get("/workers")
async def workers(request: Request) -> list[Row]:
    """The workers alive, of every queue (the ``workers`` of ``hasten status --json``)."""
    return [json_rows.worker_row(w) for w in await reads.all_workers(reads.state_of(request))]


@router.get("/limits")
async def limits(request: Request) -> list[Row]:
    """Each limited function of every queue (its limit, running and held jobs), then each key of a per-key limit
    with jobs (``hasten limits --json``)."""
    return await reads.all_limits(reads.state_of(request))


@router.get("/dead-letters-ops/{op_id}")
async def bulk_op(request: Request, op_id: str) -> Row:
    """A bulk requeue or delete's progress (read from Redis: any dashboard process answers for any operation)."""
    return _op_row(await reads.bulk_op(reads.state_of(request), op_id))


class EnqueueRequest(BaseModel):
    function: str = Field(description="a registered job's name")
    arguments: dict[str, Any] = Field(default_factory=dict, description="by name, validated as the client does")
    queue: str | None = None
    job_id: str | None = None
    defer_by_s: float | None = Field(default=None, ge=0)
    priority: int | None = Field(default=None, ge=0, le=PRIORITY_MAX, description="a head start in minutes")


class Enqueued(BaseModel):
    job_id: str
    queue: str
    enqueued: bool


async def enqueue_job(state: DashboardState, wanted: EnqueueRequest) -> Enqueued:
    """Enqueue a registered job as ``hasten enqueue`` does; an unknown job is a 404, bad arguments a 422."""
    specs = {spec.name: spec for spec in state.options.jobs}
    if wanted.function not in specs:
        raise HTTPException(404, f"no job named {wanted.function!r}; registered: {', '.join(sorted(specs)) or 'none'}")
    options: dict[str, Any] = {"job_id": wanted.job_id, "defer_by": wanted.defer_by_s, "priority": wanted.priority}
    spec = specs[wanted.function].options(**{key: value for key, value in options.items() if value is not None})
    client = await state.on_queue(wanted.queue)
    try:
        handle = await client.enqueue(spec, **wanted.arguments)
    except (JobsError, ValueError) as e:  # ValueError: options that cannot go together (priority on a deferred job)
        raise HTTPException(422, str(e)) from None
    return Enqueued(job_id=handle.job_id, queue=handle.queue_name, enqueued=handle.enqueued)


@actions.post("/jobs", status_code=201)
async def enqueue(request: Request, wanted: EnqueueRequest) -> Enqueued:
    """Enqueue a registered job (``hasten enqueue``)."""
    return await enqueue_job(reads.state_of(request), wanted)


@actions.post("/jobs/{job_id}/abort")
async def abort(request: Request, job_id: str, queue: str = "", wait_s: float = Query(5.0, ge=0, le=60)) -> Row:
    """Abort a job (``hasten abort``): ``aborted`` is false when it was not queued or running, or did not stop."""
    client = await reads.state_of(request).on_queue(queue or None)
    return {"job_id": job_id, "aborted": await client.abort(job_id, timeout_s=wait_s)}


@actions.post("/queues/{queue}/{switch}")
async def pause_or_resume(request: Request, queue: str, switch: Literal["pause", "resume"]) -> Row:
    """Pause or resume a queue (``hasten pause|resume``): ``changed`` is false when it already was so."""
    redis = (await reads.state_of(request).client()).redis
    changed = await (pausing.pause if switch == "pause" else pausing.resume)(redis, queue)
    return {"queue": queue, "paused": switch == "pause", "changed": changed}


@actions.post("/dead-letters/{job_id}/{action}")
async def dead_letter_act(request: Request, job_id: str, action: Action, queue: str = "") -> Row:
    """Requeue or delete one dead job (``hasten dlq requeue|purge <id>``)."""
    client = await reads.state_of(request).on_queue(queue or None)
    dlq = DeadLetters(client.redis, client.queue_name)
    try:
        done = await (dlq.requeue(job_id) if action == "requeue" else dlq.purge(job_id))
    except RequeueRefused as e:
        raise HTTPException(409, str(e)) from None
    if not done:
        raise HTTPException(404, f"no dead job {job_id!r}")
    return {"job_id": job_id, "action": action, "done": True}


@actions.post("/dead-letters-ops", status_code=202)
async def start_bulk(request: Request, action: Action, queue: str = "", function: str = "") -> Row:
    """Requeue or delete every dead job (of ``function``) in the background, a page at a time; poll its progress."""
    state = reads.state_of(request)
    client = await state.on_queue(queue or None)
    return _op_row(await state.bulk.start(DeadLetters(client.redis, client.queue_name), action, function or None))


def _op_row(op: BulkOp) -> Row:
    return {
        "op_id": op.op_id, "action": op.action, "queue": op.queue, "function": op.function, "examined": op.examined,
        "acted": op.acted, "total": op.total, "done": op.done, "error": op.error, "stalled": op.stalled,
        "started_ms": op.started_ms, "updated_ms": op.updated_ms,
    }  # fmt: skip
