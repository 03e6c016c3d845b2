"""Example: a Flask app (sync views) that enqueues typed jobs with the sync client.

One :class:`SyncJobClient` per process, opened on first use and closed at exit; any number of request threads
share it. Run it beside ``make run``'s worker::

    flask --app examples.flask_app run
    curl -X POST localhost:5000/webhooks -H 'content-type: application/json' \\
         -d '{"url": "https://example.com/hook", "event": "order.paid", "payload": {"order": 1}}'
    curl localhost:5000/jobs/<job_id>
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from pydantic import ValidationError

from src.jobs.webhooks import Delivery, deliver_webhook
from src.runner import JobStatus
from src.runner.sync_client import OnePerProcess
from src.settings import get_settings

app = Flask(__name__)

#: the process's client, shared by the request threads: connected on first use, closed at exit
jobs = OnePerProcess(lambda: get_settings().open_sync_client())


@app.post("/webhooks")
def enqueue_webhook() -> tuple[dict[str, Any], int]:
    try:
        delivery = Delivery.model_validate(request.get_json(force=True))
    except ValidationError as e:
        return {"detail": e.errors(include_url=False, include_context=False)}, 422
    handle = jobs().enqueue(deliver_webhook, delivery)
    return {"job_id": handle.job_id, "status": handle.status().value}, 202


@app.get("/jobs/<job_id>")
def job_status(job_id: str) -> tuple[dict[str, Any], int]:
    status = jobs().handle(deliver_webhook, job_id).status()
    return {"job_id": job_id, "status": status.value}, 404 if status is JobStatus.not_found else 200
