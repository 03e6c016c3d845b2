"""deliver_webhook against a real HTTP server on loopback, through the eager path (same validation and codec)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import orjson
import pytest

from src.jobs.webhooks import Delivery, DeliveryReceipt, deliver_webhook, sign
from src.runner import ArgumentsInvalid, EagerClient, JobClient, JobFailed
from src.runner.redis_server import free_port
from src.runner.worker import Worker
from tests.servers import HttpReceiver, serve_http


@pytest.fixture
def receiver() -> HttpReceiver:
    return HttpReceiver()


async def test_delivers_signed_json(env: pytest.MonkeyPatch, receiver: HttpReceiver) -> None:
    env.setenv("JOBS_WEBHOOK_SECRET", "whsec")
    async with serve_http(receiver, receiver.port):
        handle = await EagerClient().enqueue(
            deliver_webhook,
            Delivery(url=receiver.url, event="order.paid", payload={"order": 7}),
        )
        receipt = await handle.result()
    assert isinstance(receipt, DeliveryReceipt) and receipt.status_code == 200 and receipt.attempt == 1
    [(headers, body)] = receiver.requests
    assert orjson.loads(body) == {"id": handle.job_id, "event": "order.paid", "payload": {"order": 7}}
    assert headers["x-jobs-delivery"] == handle.job_id and headers["x-jobs-event"] == "order.paid"
    t, v1 = (part.split("=", 1)[1] for part in headers["x-jobs-signature"].split(","))
    expected = hmac.new(b"whsec", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert v1 == expected


async def test_unsigned_without_a_secret(env: pytest.MonkeyPatch, receiver: HttpReceiver) -> None:
    async with serve_http(receiver, receiver.port):
        await (await EagerClient().enqueue(deliver_webhook, Delivery(url=receiver.url, event="e", payload={}))).result()
    assert "x-jobs-signature" not in receiver.requests[0][0]


async def test_server_errors_retry_until_delivered(env: pytest.MonkeyPatch, receiver: HttpReceiver) -> None:
    receiver.statuses = [503, 500, 429]
    async with serve_http(receiver, receiver.port):
        handle = await EagerClient().enqueue(deliver_webhook, Delivery(url=receiver.url, event="e", payload={}))
        receipt = await handle.result()
    assert receipt.attempt == 4 and len(receiver.requests) == 4
    # the delivery id stays the same across retries so receivers can drop duplicates
    assert len({h["x-jobs-delivery"] for h, _ in receiver.requests}) == 1


async def test_client_errors_are_permanent(env: pytest.MonkeyPatch, receiver: HttpReceiver) -> None:
    receiver.statuses = [410]
    async with serve_http(receiver, receiver.port):
        handle = await EagerClient().enqueue(deliver_webhook, Delivery(url=receiver.url, event="e", payload={}))
        with pytest.raises(JobFailed, match=r"WebhookRejected: .* answered 410"):
            await handle.result()
    assert len(receiver.requests) == 1


async def test_unreachable_receiver_is_retried_then_fails(env: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    handle = await EagerClient().enqueue(deliver_webhook, Delivery(url=url, event="e", payload={}))
    with pytest.raises(JobFailed, match=r"WebhookUnavailable: .*ConnectError"):
        await handle.result()
    assert (await handle.info()).job_try == deliver_webhook.retry.max_tries


async def test_bad_delivery_is_refused_at_enqueue(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ArgumentsInvalid, match=r"delivery\.url"):
        await EagerClient().enqueue(deliver_webhook, {"url": "not a url", "event": "e", "payload": {}})  # type: ignore[arg-type]


async def test_through_a_real_worker(
    env: pytest.MonkeyPatch, receiver: HttpReceiver, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker([deliver_webhook])
    async with serve_http(receiver, receiver.port):
        handle = await client.enqueue(deliver_webhook, Delivery(url=receiver.url, event="e", payload={"n": 1}))
        assert (await handle.result(timeout_s=5)).status_code == 200


def test_signature_format() -> None:
    assert sign("k", 1, b"{}") == "t=1,v1=" + hmac.new(b"k", b"1.{}", hashlib.sha256).hexdigest()
