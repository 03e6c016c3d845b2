"""What people read loses URL credentials and query values; nothing else changes."""

from __future__ import annotations

import io
import logging

import pytest

from src.runner.logs import log_config
from src.runner.redact import RedactingFilter, redact_text, redact_url, redact_value


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@example.com/hook", "https://user:***@example.com/hook"),
        ("https://TOKEN@example.com/hook", "https://***@example.com/hook"),
        ("https://example.com/hook?token=abc&x=1&flag", "https://example.com/hook?token=***&x=***&flag"),
        ("https://example.com/cb#access_token=abc", "https://example.com/cb#***"),
        ("rediss://app:p%40ss@redis:6380/0", "rediss://app:***@redis:6380/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://u:p@host:notaport/x", "http://***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_urls_inside_text_and_values() -> None:
    text = "POST 'https://u:secret@h/p?k=v' failed; see http://plain/x"
    assert redact_text(text) == "POST 'https://u:***@h/p?k=***' failed; see http://plain/x"
    value = {"delivery": {"url": "https://u:secret@h/", "n": 1, "tags": ["https://h/?s=secret", "x"]}}
    assert redact_value(value) == {"delivery": {"url": "https://u:***@h/", "n": 1, "tags": ["https://h/?s=***", "x"]}}


def test_log_handler_redacts_messages_and_tracebacks() -> None:
    assert "hasten.redact" in log_config()["handlers"]["hasten.standard"]["filters"]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("hasten.test-redact")
    log.addHandler(handler)
    try:
        log.warning("connecting to %s", "redis://app:hunter5@redis:6379/0")
        try:
            raise ValueError("bad https://u:hunter6@h/?token=hunter7")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "hunter" not in out
    assert "redis://app:***@redis:6379/0" in out and "https://u:***@h/?token=***" in out
