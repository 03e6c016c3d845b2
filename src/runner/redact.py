"""Credentials out of what people read: URLs in logs, reprs and dead-letter records.

A URL can carry a secret in three places: its user info (``https://user:token@host``), its query
(``?token=…``, ``?sig=…``) and its fragment. We cannot tell which query parameter is the secret one, so every
query value is hidden; names stay, so a reader still sees which endpoint it was. What is redacted is only
what is *shown*: the job's stored payload (what a requeue runs) is never touched.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

HIDDEN = "***"

#: a scheme, ``://`` and everything up to white space or a quote: URLs as they appear in messages and reprs
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")


def redact_url(url: str) -> str:
    """``url`` with its password (or token-like user info), query values and fragment replaced by ``***``."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises here: better to hide the whole thing than guess
    except ValueError:
        return f"{url.partition('://')[0]}://{HIDDEN}" if "://" in url else HIDDEN
    return urlunsplit(
        SplitResult(
            parts.scheme,
            _netloc(parts),
            parts.path,
            "&".join(_hide_value(pair) for pair in parts.query.split("&")) if parts.query else "",
            HIDDEN if parts.fragment else "",
        )
    )


def _netloc(parts: SplitResult) -> str:
    if "@" not in parts.netloc:
        return parts.netloc
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    # "user:password" keeps the user name; a lone user info is often a token itself (https://TOKEN@host)
    return f"{user}:{HIDDEN}@{host}" if colon else f"{HIDDEN}@{host}"


def _hide_value(pair: str) -> str:
    name, equals, _value = pair.partition("=")
    return f"{name}={HIDDEN}" if equals else name


def redact_text(text: str) -> str:
    """Every URL inside free text (an error message, a traceback) redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact_value(value: Any) -> Any:
    """A JSON-like value (job arguments) with every URL in its strings redacted."""
    if isinstance(value, str):
        return redact_text(value) if "://" in value else value
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """A handler filter: the formatted message (and exception text) of every record has its URLs redacted.

    A safety net beside the rule that secrets are not logged at all: a URL with credentials can arrive inside
    an exception message from a library.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = redact_text(message), None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if "://" in text:
                record.exc_text = redact_text(text)
        return True
