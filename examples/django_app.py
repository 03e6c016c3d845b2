"""Example: a Django view that enqueues a typed job with the sync client — the whole app in one module (settings,
URLs and view), as small as Django allows; in a project the view goes in ``views.py`` and the client in a module
of its own (opened once per process, like ``jobs()`` here).

Run it beside ``make run``'s worker::

    DJANGO_SETTINGS_MODULE=examples.django_app django-admin runserver
    curl -X POST localhost:8000/webhooks -H 'content-type: application/json' \\
         -d '{"url": "https://example.com/hook", "event": "order.paid", "payload": {"order": 1}}'
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from pydantic import ValidationError

from src.jobs.webhooks import Delivery, deliver_webhook
from src.runner.sync_client import OnePerProcess
from src.settings import get_settings

# settings (DJANGO_SETTINGS_MODULE=examples.django_app)
DEBUG = False
SECRET_KEY = "example-only-not-secret"  # a real project reads it from its environment
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
ROOT_URLCONF = __name__
MIDDLEWARE: list[str] = []
INSTALLED_APPS: list[str] = []

#: the process's client, shared by the request threads: connected on first use, closed at exit
jobs = OnePerProcess(lambda: get_settings().open_sync_client())


@csrf_exempt  # an API called by other services; a form view keeps Django's CSRF check
@require_POST
def enqueue_webhook(request: HttpRequest) -> JsonResponse:
    try:
        delivery = Delivery.model_validate(json.loads(request.body))
    except (ValueError, ValidationError) as e:
        return JsonResponse({"detail": str(e)}, status=422)
    handle = jobs().enqueue(deliver_webhook, delivery)
    return JsonResponse({"job_id": handle.job_id, "status": handle.status().value}, status=202)


urlpatterns = [path("webhooks", enqueue_webhook)]
