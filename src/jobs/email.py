"""Outgoing email over SMTP (``JOBS_SMTP__*`` settings).

Permanent SMTP answers (5xx, refused recipients) fail the job for good; connection problems and
temporary (4xx) answers retry with backoff.
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
from pydantic import BaseModel, EmailStr, Field

from src.runner import Backoff, JobContext, Permanent, job


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
    from src.settings import get_settings  # settings imports this module for WorkerSettings

    smtp = get_settings().smtp
    sender = smtp.from_address
    domain = sender.rpartition("@")[2] or "localhost"
    message = build_message(email, sender, f"<{ctx.job_id}@{domain}>")
    try:
        errors, reply = await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password else None,
            use_tls=smtp.tls == "tls",
            start_tls={"starttls": True, "none": False, "auto": None, "tls": False}[smtp.tls],
            timeout=smtp.timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as e:
        raise EmailRejected(f"all recipients refused: {e.recipients}") from e
    except aiosmtplib.SMTPResponseException as e:
        if e.code >= 500:
            raise EmailRejected(f"server refused the message: {e.code} {e.message}") from e
        raise
    refused = set(errors)
    return EmailReceipt(accepted=[r for r in email.to if r not in refused], server_reply=reply)
