"""Outgoing webhooks: POST an event as JSON, signed with HMAC-SHA256 when a webhook secret is set.

Receivers verify ``X-Jobs-Signature: t=<unix seconds>,v1=<hex hmac of "<t>.<body>">`` and may use
``X-Jobs-Delivery`` (the job id, stable across retries) to drop duplicates: delivery is at-least-once.
Server errors (5xx), 408, 429 and transport failures retry with backoff; any other non-2xx answer is a
permanent failure (the receiver refused this delivery; sending it again would not help). Targets on
loopback, private, link-local or metadata addresses are refused unless allowed (see ``webhook_target.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson
from pydantic import BaseModel, Field, HttpUrl

from src.jobs.webhook_target import pin
from src.runner import Backoff, JobContext, Permanent, job
from src.runner.redact import redact_url

#: answers that mean "try again later"
RETRYABLE_STATUS = frozenset({408, 425, 429})


class Delivery(BaseModel):
    url: HttpUrl
    event: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any]


class DeliveryReceipt(BaseModel):
    status_code: int
    elapsed_ms: float
    attempt: int


class WebhookRejected(Permanent):
    """The receiver answered with a status that retrying will not change."""


class WebhookUnavailable(Exception):
    """The receiver failed or asked us to come back later; retried."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Jobs-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@job(timeout_s=30, retry=Backoff(max_tries=8, base_s=2, max_s=600))
async def deliver_webhook(ctx: JobContext, delivery: Delivery) -> DeliveryReceipt:
    import httpx2  # when the job first runs: a worker that starts makes no HTTP call yet (README "Performance")

    from src.settings import get_settings  # settings imports this module for WorkerSettings

    settings = get_settings()
    body = orjson.dumps({"id": ctx.job_id, "event": delivery.event, "payload": delivery.payload})
    headers = {
        "content-type": "application/json",
        "user-agent": "jobs-webhooks/1",
        "x-jobs-event": delivery.event,
        "x-jobs-delivery": ctx.job_id,
    }
    if settings.webhook_secret is not None:
        headers["x-jobs-signature"] = sign(settings.webhook_secret.get_secret_value(), int(time.time()), body)
    # messages name the target without its credentials or query values: they end up in logs and the DLQ
    shown = redact_url(str(delivery.url))
    started = time.perf_counter()
    try:
        target = await pin(delivery.url, settings.webhook_allowed_networks)
        response = await ctx.http.post(
            target.url,
            content=body,
            headers={**headers, **target.headers},
            extensions=target.extensions,
            timeout=settings.webhook_timeout_s,
        )
    except (httpx2.TransportError, OSError) as e:
        raise WebhookUnavailable(f"{shown}: {type(e).__name__}: {e}") from e
    elapsed_ms = (time.perf_counter() - started) * 1000
    status = response.status_code
    if status >= 500 or status in RETRYABLE_STATUS:
        raise WebhookUnavailable(f"{shown} answered {status}")
    if not 200 <= status < 300:
        raise WebhookRejected(f"{shown} answered {status}: {response.text[:200]}")
    return DeliveryReceipt(status_code=status, elapsed_ms=round(elapsed_ms, 2), attempt=ctx.job_try)
