"""send_email against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
from collections.abc import Iterator

import pytest

from src.jobs.email import Email, EmailReceipt, send_email
from src.runner import ArgumentsInvalid, EagerClient, JobFailed
from tests.servers import SmtpRecorder, serve_smtp


@pytest.fixture
def smtp(env: pytest.MonkeyPatch) -> Iterator[SmtpRecorder]:
    recorder = SmtpRecorder(refuse={"nobody@example.com"})
    with serve_smtp(recorder) as controller:
        env.setenv("JOBS_SMTP__HOST", "127.0.0.1")
        env.setenv("JOBS_SMTP__PORT", str(controller.port))
        env.setenv("JOBS_SMTP__TLS", "none")
        env.setenv("JOBS_SMTP__FROM_ADDRESS", "shop@example.com")
        yield recorder


async def test_sends_text_and_html(smtp: SmtpRecorder) -> None:
    message = Email(to=["a@example.com", "b@example.com"], subject="Paid", text="Thanks!", html="<b>Thanks!</b>")
    handle = await EagerClient().enqueue(send_email, message)
    receipt = await handle.result()
    assert isinstance(receipt, EmailReceipt) and receipt.accepted == ["a@example.com", "b@example.com"]
    [envelope] = smtp.messages
    assert envelope.mail_from == "shop@example.com"
    assert envelope.rcpt_tos == ["a@example.com", "b@example.com"]
    parsed = email.message_from_bytes(envelope.original_content or b"")
    assert parsed["Subject"] == "Paid"
    assert parsed["Message-ID"] == f"<{handle.job_id}@example.com>"
    assert {part.get_content_type() for part in parsed.walk()} >= {"text/plain", "text/html"}


async def test_partly_refused_recipients_are_reported(smtp: SmtpRecorder) -> None:
    message = Email(to=["a@example.com", "nobody@example.com"], subject="s", text="t")
    receipt = await (await EagerClient().enqueue(send_email, message)).result()
    assert receipt.accepted == ["a@example.com"]


async def test_all_recipients_refused_is_permanent(smtp: SmtpRecorder) -> None:
    handle = await EagerClient().enqueue(send_email, Email(to=["nobody@example.com"], subject="s", text="t"))
    with pytest.raises(JobFailed, match="EmailRejected: all recipients refused"):
        await handle.result()
    assert (await handle.info()).job_try == 1


async def test_invalid_address_is_refused_at_enqueue(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ArgumentsInvalid, match=r"email\.to\.0"):
        await EagerClient().enqueue(send_email, {"to": ["not-an-address"], "subject": "s", "text": "t"})  # type: ignore[arg-type]
