"""deliver_webhook against a real HTTP server on loopback, through the eager path (same validation and codec)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import orjson
import pytest
import trustme

from src.jobs.webhooks import Delivery, DeliveryReceipt, deliver_webhook, sign
from src.runner import ArgumentsInvalid, DeadLetters, EagerClient, JobClient, JobFailed
from src.runner.redis_server import free_port
from src.runner.worker import Worker
from tests.servers import HttpReceiver, serve_http

#: the receivers of these tests listen on loopback, which webhooks may reach only when allowed
LOOPBACK_ALLOWED = '["127.0.0.0/8", "::1/128"]'


@pytest.fixture
def receiver(env: pytest.MonkeyPatch) -> HttpReceiver:
    env.setenv("JOBS_WEBHOOK_ALLOWED_NETWORKS", LOOPBACK_ALLOWED)
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
    env.setenv("JOBS_WEBHOOK_ALLOWED_NETWORKS", LOOPBACK_ALLOWED)
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


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",  # loopback
        "localhost",  # a name that resolves to loopback: checked after resolution
        "10.1.2.3",  # private
        "192.168.0.10",
        "169.254.169.254",  # cloud metadata (link-local)
        "100.100.100.200",  # shared address space (another cloud's metadata)
        "0.0.0.0",
        "[::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped loopback
        "[fd00:ec2::254]",  # unique local (metadata over IPv6)
    ],
)
async def test_non_public_targets_are_refused(env: pytest.MonkeyPatch, receiver: HttpReceiver, host: str) -> None:
    env.delenv("JOBS_WEBHOOK_ALLOWED_NETWORKS")
    async with serve_http(receiver, receiver.port):
        url = f"http://{host}:{receiver.port}/hook"
        handle = await EagerClient().enqueue(deliver_webhook, Delivery(url=url, event="e", payload={}))
        with pytest.raises(JobFailed, match=r"WebhookTargetRefused: .* not a public address"):
            await handle.result()
    assert receiver.requests == []
    assert (await handle.info()).job_try == 1  # refused for good, not retried


async def test_allowed_network_lets_a_name_through_pinned_to_the_checked_address(
    env: pytest.MonkeyPatch, receiver: HttpReceiver
) -> None:
    env.setenv("JOBS_WEBHOOK_ALLOWED_NETWORKS", '["127.0.0.1/32", "::1/128"]')  # localhost may also be ::1
    async with serve_http(receiver, receiver.port):
        url = f"http://localhost:{receiver.port}/hook?token=abc"
        await (await EagerClient().enqueue(deliver_webhook, Delivery(url=url, event="e", payload={}))).result()
    [(headers, _)] = receiver.requests
    assert headers["host"] == f"localhost:{receiver.port}"  # sent to 127.0.0.1, still naming the URL's host


async def test_allowing_one_network_does_not_allow_others(env: pytest.MonkeyPatch) -> None:
    env.setenv("JOBS_WEBHOOK_ALLOWED_NETWORKS", '["10.0.0.0/8"]')
    handle = await EagerClient().enqueue(
        deliver_webhook, Delivery(url="http://169.254.169.254/latest/meta-data/", event="e", payload={})
    )
    with pytest.raises(JobFailed, match="WebhookTargetRefused"):
        await handle.result()


async def test_credentials_in_the_url_are_sent_but_never_shown(
    env: pytest.MonkeyPatch, receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [410]
    url = f"http://hook-user:hook-pass@127.0.0.1:{receiver.port}/hook?token=query-secret"
    async with serve_http(receiver, receiver.port):
        handle = await EagerClient().enqueue(deliver_webhook, Delivery(url=url, event="e", payload={}))
        with pytest.raises(JobFailed) as failed:
            await handle.result()
    [(headers, _)] = receiver.requests
    assert headers["authorization"].startswith("Basic ")  # the receiver still gets its credentials
    assert "hook-pass" not in str(failed.value) and "query-secret" not in str(failed.value)
    assert "hook-user:***@127.0.0.1" in str(failed.value) and "token=***" in str(failed.value)


async def test_dead_letter_hides_credentials_and_requeue_still_delivers(
    env: pytest.MonkeyPatch,
    receiver: HttpReceiver,
    client: JobClient,
    running_worker: Callable[..., Worker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    running_worker([deliver_webhook])
    receiver.statuses = [410]
    url = f"http://hook-user:hook-pass@127.0.0.1:{receiver.port}/hook?token=query-secret"
    async with serve_http(receiver, receiver.port):
        handle = await client.enqueue(deliver_webhook, Delivery(url=url, event="e", payload={}))
        with pytest.raises(JobFailed, match="WebhookRejected"):
            await handle.result(timeout_s=5)
        dlq = DeadLetters(client.redis)
        dead = await dlq.get(handle.job_id)
        assert dead is not None
        shown = orjson.dumps({**asdict(dead), "payload_b64": ""}).decode()
        assert "hook-pass" not in shown and "query-secret" not in shown
        assert dead.kwargs["delivery"]["url"] == f"http://hook-user:***@127.0.0.1:{receiver.port}/hook?token=***"
        # the stored payload is the job as queued: requeued, it delivers to the real URL with its credentials
        assert b"hook-pass" in base64.b64decode(dead.payload_b64)
        assert await dlq.requeue(handle.job_id)
        assert (await handle.result(timeout_s=5)).status_code == 200
    assert receiver.requests[-1][0]["authorization"] == "Basic " + base64.b64encode(b"hook-user:hook-pass").decode()
    assert "hook-pass" not in caplog.text and "query-secret" not in caplog.text


async def test_https_target_is_pinned_and_its_certificate_checked_against_the_url_host(
    env: pytest.MonkeyPatch, receiver: HttpReceiver, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    env.setenv("SSL_CERT_FILE", str(ca_file))  # the HTTP client trusts the test CA
    tls = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}
    async with serve_http(receiver, receiver.port, **tls):
        # connected to the checked address (127.0.0.1); TLS still verifies the certificate names "localhost"
        url = f"https://localhost:{receiver.port}/hook"
        receipt = await (
            await EagerClient().enqueue(deliver_webhook, Delivery(url=url, event="e", payload={}))
        ).result()
        assert receipt.status_code == 200
        assert receiver.requests[0][0]["host"] == f"localhost:{receiver.port}"
        # a certificate that does not name the URL's host is refused
        url = f"https://127.0.0.1:{receiver.port}/hook"
        handle = await EagerClient().enqueue(deliver_webhook, Delivery(url=url, event="e", payload={}))
        with pytest.raises(JobFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await handle.result()
    assert len(receiver.requests) == 1
