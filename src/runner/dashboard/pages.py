"""The HTML pages: overview (live), jobs, a job, enqueue, dead letters, cron, workers, limits."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from .. import json_rows, pausing
from ..cron_state import cron_states
from ..dlq import DeadLetters
from ..errors import JobsError, RequeueRefused
from ..queue_admin import JOB_STATES
from ..worker_registry import HEARTBEAT_S
from . import reads
from .auth import form_fields, require_access, require_same_origin
from .events import event_stream
from .overview import read_overview
from .render import fragment, page, prefix
from .state import DashboardState

router = APIRouter(dependencies=[Depends(require_access)], include_in_schema=False)
#: routes that change something; left out entirely in read-only mode
actions = APIRouter(dependencies=[Depends(require_access), Depends(require_same_origin)], include_in_schema=False)

#: a worker whose heartbeat is older than this has missed two: shown greyed until its record expires
LATE_S = 2 * HEARTBEAT_S
OVERDUE = timedelta(seconds=60)


async def overview_html(state: DashboardState, base: str) -> str:
    """The overview's live part: what the page starts with and what the poller sends."""
    client = await state.client()
    views = await read_overview(client.redis, await state.queues())
    workers = [w for v in views for w in v.stats.workers]
    return fragment("_overview.html", views=views, workers=workers, base=base)


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> HTMLResponse:
    live = await overview_html(reads.state_of(request), prefix(request))
    return page(request, "overview.html", nav="overview", live=live)


@router.get("/events/overview")
async def overview_events(request: Request) -> StreamingResponse:
    """Server-sent events: the overview's live part, about once a second, from the one shared poller."""
    state = reads.state_of(request)
    if state.poller is None:
        raise HTTPException(500, "the dashboard's poller is missing")
    state.poller.render_base = prefix(request)
    return StreamingResponse(
        event_stream(state.poller, "overview"), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )  # fmt: skip


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(request: Request, filters: Annotated[reads.JobFilters, Depends()]) -> HTMLResponse:
    state = reads.state_of(request)
    found = await reads.jobs_page(state, filters, reads.PAGE_ROWS)
    shown = replace(filters, queue=filters.queue or (await state.client()).queue_name)
    paused_since_ms = await pausing.paused_since_ms((await state.client()).redis, shown.queue)
    return page(
        request, "jobs.html", nav="jobs", rows=found.jobs, next_cursor=found.cursor, scanned=found.scanned,
        queues=await state.queues(), states=JOB_STATES, filters=shown, paused_since_ms=paused_since_ms,
        functions=[spec.name for spec in state.options.jobs],
    )  # fmt: skip


@actions.post("/queues/{queue}/{switch}")
async def pause_or_resume(request: Request, queue: str, switch: Literal["pause", "resume"]) -> RedirectResponse:
    """Pause or resume a queue (``hasten pause|resume``), back to its jobs page."""
    redis = (await reads.state_of(request).client()).redis
    await (pausing.pause if switch == "pause" else pausing.resume)(redis, queue)
    return _back(request, "/jobs", queue=queue)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job(request: Request, job_id: str, queue: str = "") -> HTMLResponse:
    state = reads.state_of(request)
    record, dead = await reads.job_record(state, job_id, queue or None)
    return page(
        request, "job.html", nav="jobs", job_id=job_id, record=record, dead=dead and json_rows.dead_row(dead),
        queue=record["queue"], message=request.query_params.get("message", ""),
        workflow=await reads.workflow_of(state, record),
    )  # fmt: skip


@router.get("/workflows/{workflow_id}", response_class=HTMLResponse)
async def workflow(request: Request, workflow_id: str) -> HTMLResponse:
    row = await reads.workflow(reads.state_of(request), workflow_id)
    return page(request, "workflow.html", nav="jobs", workflow=row, job_id=None)


@actions.post("/jobs/{job_id}/abort")
async def abort(request: Request, job_id: str, queue: str = "") -> RedirectResponse:
    client = await reads.state_of(request).on_queue(queue or None)
    aborted = await client.abort(job_id, timeout_s=5.0)
    message = "aborted" if aborted else "not aborted: not queued or running, or it did not stop within 5 s"
    return _back(request, f"/jobs/{quote(job_id, safe='')}", queue=client.queue_name, message=message)


@router.get("/open-job")
async def open_job(request: Request, job_id: str = "", queue: str = "") -> RedirectResponse:
    return _back(request, f"/jobs/{quote(job_id.strip(), safe='')}", queue=queue)


@router.get("/enqueue", response_class=HTMLResponse)
async def enqueue_form(request: Request, function: str = "") -> HTMLResponse:
    return await _enqueue_page(request, {"function": function, "kwargs": "{}"})


async def _enqueue_page(request: Request, values: dict[str, str], error: str = "", code: int = 200) -> HTMLResponse:
    state = reads.state_of(request)
    specs = {spec.name: spec for spec in state.options.jobs}
    return page(
        request, "enqueue.html", code, nav="enqueue", specs=specs, values=values, error=error,
        queues=await state.queues(), params={name: list(spec._params) for name, spec in specs.items()},
    )  # fmt: skip


@actions.post("/enqueue", response_model=None)
async def enqueue(request: Request) -> Response:
    from .api import EnqueueRequest, enqueue_job

    fields = {name: values[0] for name, values in (await form_fields(request)).items()}
    try:
        kwargs = json.loads(fields.get("kwargs") or "{}")
    except json.JSONDecodeError as e:
        return await _enqueue_page(request, fields, f"arguments are not JSON: {e}", 422)
    try:
        defer_by_s = float(fields["defer_by_s"]) if fields.get("defer_by_s") else None
        priority = int(fields["priority"]) if fields.get("priority") else None
        wanted = EnqueueRequest(
            function=fields.get("function", ""), arguments=kwargs, queue=fields.get("queue") or None,
            job_id=fields.get("job_id") or None, defer_by_s=defer_by_s, priority=priority,
        )  # fmt: skip
        sent = await enqueue_job(reads.state_of(request), wanted)
    except (JobsError, ValueError, HTTPException) as e:
        detail = e.detail if isinstance(e, HTTPException) else str(e)
        return await _enqueue_page(request, fields, str(detail), 422)
    return _back(request, f"/jobs/{quote(sent.job_id, safe='')}", queue=sent.queue, message="enqueued")


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(
    request: Request, queue: str = "", function: str = "", offset: int = Query(0, ge=0)
) -> HTMLResponse:
    state = reads.state_of(request)
    total, rows = await reads.dead_page(state, queue or None, function, offset, reads.PAGE_ROWS)
    return page(
        request, "dead_letters.html", nav="dead", rows=rows, total=total, queues=await state.queues(),
        queue=queue or (await state.client()).queue_name, function=function, offset=offset, limit=reads.PAGE_ROWS,
        message=request.query_params.get("message", ""),
    )  # fmt: skip


@actions.post("/dead-letters/{action}")
async def dead_letters_act(request: Request, action: str) -> RedirectResponse:
    """Requeue or delete the dead jobs ticked (``job_id`` fields), or every one matching ``function`` (``all``):
    the latter in the background, a page at a time, with its progress on a page of its own."""
    if action not in ("requeue", "delete"):
        raise HTTPException(404)
    fields = await form_fields(request)
    state = reads.state_of(request)
    client = await state.on_queue(fields.get("queue", [""])[0] or None)
    dlq = DeadLetters(client.redis, client.queue_name)
    if fields.get("all", [""])[0] == "yes":
        function = fields.get("function", [""])[0] or None
        op = await state.bulk.start(dlq, "requeue" if action == "requeue" else "delete", function)
        return _back(request, f"/dead-letters/ops/{op.op_id}")
    # a row's own button names its job ("one"); the buttons below the table act on the rows ticked
    ids = [i for i in (fields.get("one") or fields.get("job_id", [])) if i]
    done = 0
    refused: list[str] = []
    for job_id in ids:
        try:
            done += await (dlq.requeue(job_id) if action == "requeue" else dlq.purge(job_id))
        except RequeueRefused as e:  # a workflow's step: said why, the others go on
            refused.append(str(e))
    verb = "requeued" if action == "requeue" else "deleted"
    message = " ".join([f"{verb} {done} of {len(ids)} dead job(s)", *refused[:1]])
    return _back(request, "/dead-letters", queue=client.queue_name, message=message)


@router.get("/dead-letters/ops/{op_id}", response_class=HTMLResponse)
async def dead_letters_op(request: Request, op_id: str) -> HTMLResponse:
    op = await reads.bulk_op(reads.state_of(request), op_id)
    return page(request, "bulk_op.html", nav="dead", op=op)


@router.get("/cron", response_class=HTMLResponse)
async def cron(request: Request) -> HTMLResponse:
    client = await reads.state_of(request).client()
    now = datetime.now(UTC)
    #: an entry is overdue when its next tick passed a minute ago and no worker enqueued it (as ``hasten cron``)
    rows = [(s, s.next_tick is not None and now - s.next_tick > OVERDUE) for s in await cron_states(client.redis)]
    return page(request, "cron.html", nav="cron", rows=rows)


@router.get("/workers", response_class=HTMLResponse)
async def workers(request: Request) -> HTMLResponse:
    rows = [json_rows.worker_row(w) for w in await reads.all_workers(reads.state_of(request))]
    return page(request, "workers.html", nav="workers", rows=rows, late_s=LATE_S)


@router.get("/limits", response_class=HTMLResponse)
async def limits(request: Request) -> HTMLResponse:
    return page(request, "limits.html", nav="limits", rows=await reads.all_limits(reads.state_of(request)))


def _back(request: Request, path: str, **query: Any) -> RedirectResponse:
    """After a POST, a GET of the page to show (303: the browser does not repeat the POST on reload)."""
    shown = {key: value for key, value in query.items() if value}
    url = prefix(request) + path + (f"?{urlencode(shown)}" if shown else "")
    return RedirectResponse(url, status_code=303)
