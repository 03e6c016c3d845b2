"""Example service: FastAPI routes that enqueue typed jobs and await their results.

Run it with ``make run`` (which also starts Redis and a worker), then::

    curl -X POST localhost:8000/demo
    curl -X POST localhost:8000/webhooks -H 'content-type: application/json' \\
         -d '{"url": "http://127.0.0.1:8000/echo", "event": "order.paid", "payload": {"order": 1}}'
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from src.jobs.email import Email, send_email
from src.jobs.webhooks import Delivery, DeliveryReceipt, deliver_webhook
from src.runner import JobClient, JobFailed, JobInfo, JobStatus, ResultNotReady
from src.runner.fastapi import Jobs, client_lifespan
from src.settings import get_settings


async def _open_client() -> JobClient:
    return await get_settings().open_client()


app = FastAPI(title="hasten example", lifespan=client_lifespan(_open_client))

logger = logging.getLogger("hasten.example")


@app.exception_handler(RedisConnectionError)
@app.exception_handler(RedisTimeoutError)
async def redis_unavailable(request: Request, error: Exception) -> JSONResponse:
    """Redis went away while the API runs: a 503 and one log line, not a 500 and a traceback."""
    logger.warning("%s %s: Redis unavailable (%s)", request.method, request.url.path, error)
    return JSONResponse({"detail": "Redis is unavailable; try again shortly"}, status_code=503)


#: what /echo received, newest last (the demo webhook receiver)
received: list[dict[str, Any]] = []


class Enqueued(BaseModel):
    job_id: str
    status: JobStatus


class JobView(BaseModel):
    job_id: str
    status: JobStatus
    function: str | None
    success: bool | None
    result: Any = None
    error: str | None = None


@app.post("/webhooks", status_code=202)
async def enqueue_webhook(delivery: Delivery, jobs: Jobs) -> Enqueued:
    handle = await jobs.enqueue(deliver_webhook, delivery)
    return Enqueued(job_id=handle.job_id, status=await handle.status())


@app.post("/webhooks/wait")
async def deliver_and_wait(delivery: Delivery, jobs: Jobs) -> DeliveryReceipt:
    """Enqueue, then wait (up to 10 s) for the worker's typed receipt."""
    handle = await jobs.enqueue(deliver_webhook, delivery)
    try:
        return await handle.result(timeout_s=10)
    except ResultNotReady:
        raise HTTPException(504, f"job {handle.job_id} is still running") from None
    except JobFailed as e:
        raise HTTPException(502, f"delivery failed: {e}") from None


@app.post("/emails", status_code=202)
async def enqueue_email(email: Email, jobs: Jobs) -> Enqueued:
    handle = await jobs.enqueue(send_email, email)
    return Enqueued(job_id=handle.job_id, status=await handle.status())


@app.get("/jobs/{job_id}")
async def job_info(job_id: str, jobs: Jobs) -> JobView:
    info: JobInfo = await jobs.info(job_id)
    if info.status is JobStatus.not_found and info.function is None:
        raise HTTPException(404, f"job {job_id} not found")
    return JobView(
        job_id=job_id, status=info.status, function=info.function, success=info.success,
        result=info.result, error=info.error,
    )  # fmt: skip


@app.post("/echo")
async def echo(request: Request) -> dict[str, bool]:
    """A webhook receiver, so the demo has somewhere to deliver to."""
    received.append({"headers": dict(request.headers), "body": await request.json()})
    return {"ok": True}


@app.post("/demo")
async def demo(jobs: Jobs) -> DeliveryReceipt:
    """One round trip through the whole system: a webhook to this app's own /echo, awaited.

    The target comes from the settings, never from the request's Host header (which the caller chooses: it
    would let anyone point the worker at an address of their choice). The worker delivers to loopback only
    when ``JOBS_WEBHOOK_ALLOWED_NETWORKS`` allows it, as ``make run`` does for this demo.
    """
    settings = get_settings()
    url = f"http://{settings.api_host}:{settings.api_port}/echo"
    delivery = Delivery(url=url, event="demo.ping", payload={"hello": "world"})
    handle = await jobs.enqueue(deliver_webhook, delivery)
    return await handle.result(timeout_s=10)
