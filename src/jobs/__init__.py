"""The project's jobs, one module per domain. ``ALL`` is what the worker registers."""

from __future__ import annotations

from typing import Any

from src.runner import JobSpec

from .email import send_email
from .maintenance import record_queue_health
from .webhooks import deliver_webhook

ALL: list[JobSpec[Any, Any]] = [deliver_webhook, send_email, record_queue_health]

__all__ = ["ALL", "deliver_webhook", "record_queue_health", "send_email"]
