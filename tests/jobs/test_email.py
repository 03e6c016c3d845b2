"""send_email against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

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


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and the CA file that trusts it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "smtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, ca_file


def _with_credentials(env: pytest.MonkeyPatch, port: int) -> None:
    env.setenv("JOBS_SMTP__HOST", "127.0.0.1")
    env.setenv("JOBS_SMTP__PORT", str(port))
    env.setenv("JOBS_SMTP__USERNAME", "mailer")
    env.setenv("JOBS_SMTP__PASSWORD", "smtp-hunter9")
    env.setenv("JOBS_SMTP__TLS", "auto")


async def test_auto_with_credentials_refuses_a_server_without_starttls(env: pytest.MonkeyPatch) -> None:
    recorder = SmtpRecorder()
    with serve_smtp(recorder) as controller:
        _with_credentials(env, controller.port)
        handle = await EagerClient().enqueue(send_email, Email(to=["a@example.com"], subject="s", text="t"))
        with pytest.raises(JobFailed, match=r"SmtpInsecure: .* offers no STARTTLS; credentials are not sent"):
            await handle.result()
    assert recorder.logins == [] and recorder.messages == []
    assert (await handle.info()).job_try == 1  # a configuration problem: not retried


async def test_auto_with_credentials_authenticates_over_starttls(
    env: pytest.MonkeyPatch, certificates: tuple[ssl.SSLContext, Path]
) -> None:
    context, ca_file = certificates
    recorder = SmtpRecorder()
    with serve_smtp(recorder, tls_context=context) as controller:
        _with_credentials(env, controller.port)
        env.setenv("JOBS_SMTP__CA_FILE", str(ca_file))
        handle = await EagerClient().enqueue(send_email, Email(to=["a@example.com"], subject="s", text="t"))
        assert (await handle.result()).accepted == ["a@example.com"]
    assert recorder.logins == [("mailer", "smtp-hunter9", True)]  # over TLS


# the test server (aiosmtpd) leaves its side of the refused STARTTLS unclosed, and the collector may find it at any
# moment of the test: its ResourceWarning is the server's, not the client's
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_starttls_to_an_untrusted_certificate_fails(
    env: pytest.MonkeyPatch, certificates: tuple[ssl.SSLContext, Path]
) -> None:
    context, _ = certificates  # the server's CA is not given: the system's CAs do not know it
    recorder = SmtpRecorder()
    with serve_smtp(recorder, tls_context=context) as controller:
        _with_credentials(env, controller.port)
        handle = await EagerClient().enqueue(send_email, Email(to=["a@example.com"], subject="s", text="t"))
        with pytest.raises(JobFailed, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await handle.result()
    assert recorder.logins == []


def test_credentials_without_tls_are_refused(env: pytest.MonkeyPatch) -> None:
    from src.settings import Settings

    env.setenv("JOBS_SMTP__USERNAME", "mailer")
    env.setenv("JOBS_SMTP__PASSWORD", "smtp-hunter9")
    env.setenv("JOBS_SMTP__TLS", "none")
    with pytest.raises(ValueError, match="never sent unencrypted") as refused:
        Settings()
    assert "smtp-hunter9" not in str(refused.value)
