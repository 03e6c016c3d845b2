"""Outgoing email over SMTP (``JOBS_SMTP__*`` settings).

Permanent SMTP answers (5xx, refused recipients) fail the job for good; connection problems and
temporary (4xx) answers retry with backoff. Credentials only travel encrypted: with a username or password,
``tls="auto"`` requires STARTTLS instead of using it when offered, and a server that offers none is refused.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import TYPE_CHECKING

from pydantic import BaseModel, EmailStr, Field

from src.runner import Backoff, JobContext, Permanent, job

if TYPE_CHECKING:
    # imported when the job first runs: a worker that starts sends no mail yet (README "Performance": memory)
    import aiosmtplib


class Email(BaseModel):
    to: list[EmailStr] = Field(min_length=1, max_length=100)
    subject: str = Field(max_length=998)
    text: str
    html: str | None = None
    reply_to: EmailStr | None = None


class EmailReceipt(BaseModel):
    accepted: list[str]
    server_reply: str


class EmailRejected(Permanent):
    """The server refused the message or every recipient permanently."""


class SmtpInsecure(Permanent):
    """Credentials are set but the server offers no TLS: they are not sent in clear text."""


def _start_tls(tls: str, has_credentials: bool) -> bool | None:
    """aiosmtplib's ``start_tls``: True requires STARTTLS, None upgrades when offered, False never upgrades."""
    if tls == "auto":
        return True if has_credentials else None  # no opportunistic upgrade that a stripped EHLO could skip
    return tls == "starttls"


def build_message(email: Email, sender: str, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(email.to)
    message["Subject"] = email.subject
    # a stable id across retries lets receiving systems drop duplicates (delivery is at-least-once)
    message["Message-ID"] = message_id
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message.set_content(email.text)
    if email.html is not None:
        message.add_alternative(email.html, subtype="html")
    return message


@job(timeout_s=60, retry=Backoff(max_tries=6, base_s=5, max_s=900))
async def send_email(ctx: JobContext, email: Email) -> EmailReceipt:
    import aiosmtplib

    from src.settings import get_settings  # settings imports this module for WorkerSettings

    smtp = get_settings().smtp
    sender = smtp.from_address
    domain = sender.rpartition("@")[2] or "localhost"
    message = build_message(email, sender, f"<{ctx.job_id}@{domain}>")
    has_credentials = smtp.username is not None or smtp.password is not None
    start_tls = _start_tls(smtp.tls, has_credentials)
    try:
        errors, reply = await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password else None,
            use_tls=smtp.tls == "tls",
            start_tls=start_tls,
            cert_bundle=str(smtp.ca_file) if smtp.ca_file else None,
            timeout=smtp.timeout_s,
        )
    except aiosmtplib.SMTPException as e:
        # aiosmtplib says so only in the message; with start_tls=True it gives up before sending anything
        if start_tls and "STARTTLS extension not supported" in str(e):
            why = "credentials are not sent unencrypted" if has_credentials else "JOBS_SMTP__TLS=starttls requires it"
            raise SmtpInsecure(
                f"{smtp.host}:{smtp.port} offers no STARTTLS; {why} "
                "(use a server with STARTTLS, or JOBS_SMTP__TLS=tls for implicit TLS)"
            ) from e
        _raise_for(e)
        raise
    refused = set(errors)
    return EmailReceipt(accepted=[r for r in email.to if r not in refused], server_reply=reply)


def _raise_for(e: aiosmtplib.SMTPException) -> None:
    """Permanent answers as :class:`EmailRejected`; anything else is left to retry."""
    import aiosmtplib

    if isinstance(e, aiosmtplib.SMTPRecipientsRefused):
        raise EmailRejected(f"all recipients refused: {e.recipients}") from e
    if isinstance(e, aiosmtplib.SMTPResponseException) and e.code >= 500:
        raise EmailRejected(f"server refused the message: {e.code} {e.message}") from e
