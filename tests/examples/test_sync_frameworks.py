"""The Flask and Django examples, driven by each framework's own test client against the real Redis: a view
enqueues a typed job with the sync client, and the job is there for a worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from src.jobs.webhooks import deliver_webhook
from src.runner import JobStatus, SyncJobClient
from src.settings import get_settings

DELIVERY = {"url": "https://example.com/hook", "event": "order.paid", "payload": {"order": 1}}


@pytest.fixture
def reader(env: pytest.MonkeyPatch) -> Iterator[SyncJobClient]:
    with get_settings().open_sync_client() as client:
        yield client


def test_flask_view_enqueues_a_job(env: pytest.MonkeyPatch, reader: SyncJobClient) -> None:
    from examples import flask_app

    http = flask_app.app.test_client()
    try:
        response = http.post("/webhooks", json=DELIVERY)
        assert response.status_code == 202, response.text
        job_id = response.get_json()["job_id"]
        assert reader.handle(deliver_webhook, job_id).status() is JobStatus.queued
        assert http.get(f"/jobs/{job_id}").get_json() == {"job_id": job_id, "status": "queued"}
        assert http.get("/jobs/nope").status_code == 404
        assert http.post("/webhooks", json={"url": "not a url"}).status_code == 422
    finally:
        flask_app.jobs.close()  # each test's Redis is its own


def test_django_view_enqueues_a_job(env: pytest.MonkeyPatch, reader: SyncJobClient) -> None:
    env.setenv("DJANGO_SETTINGS_MODULE", "examples.django_app")
    import django
    from django.test import Client

    django.setup()
    from examples import django_app

    http = Client()
    try:
        response = http.post("/webhooks", DELIVERY, content_type="application/json")
        assert response.status_code == 202, response.content
        job_id = response.json()["job_id"]
        assert reader.handle(deliver_webhook, job_id).status() is JobStatus.queued
        assert http.post("/webhooks", {"url": 1}, content_type="application/json").status_code == 422
        assert http.get("/webhooks").status_code == 405
    finally:
        django_app.jobs.close()
