"""Credentials out of what people read: URLs in logs, reprs and dead-letter records, and the arguments a job names
in ``@job(redact=[...])``.

A URL can carry a secret in three places: its user info (``https://user:token@host``), its query
(``?token=…``, ``?sig=…``) and its fragment. We cannot tell which query parameter is the secret one, so every
query value is hidden; names stay, so a reader still sees which endpoint it was. What is redacted is only
what is *shown*: the job's stored payload (what a requeue runs) is never touched.

``@job(redact=["password", "card.number"])`` names arguments (top level, or a dotted path into a model or dict
argument) whose values are never shown: :func:`mask_arguments` replaces them with :data:`MASK` wherever arguments
are displayed (``JobClient.info()``, the result record, dead-letter records, error-tracker events). The paths
travel inside the payload (:data:`REDACT_KEY`), so a process that never imported the job still hides them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

HIDDEN = "***"
#: what a redacted argument shows instead of its value (a fixed string: its length says nothing of the value)
MASK = "[redacted]"
#: key of the job dict (inside the signed payload) that lists the job's redacted paths; arq ignores it
REDACT_KEY = "rd"

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


def mask_arguments(kwargs: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """A copy of ``kwargs`` with the value at each dotted path in ``paths`` replaced by :data:`MASK` (paths not
    present are skipped; lists on the way are walked item by item). ``kwargs`` itself is not changed."""
    masked = kwargs
    for path in paths:
        masked = _mask(masked, path.split("."))
    return masked


def _mask(value: Any, parts: list[str]) -> Any:
    if isinstance(value, list | tuple):
        return [_mask(item, parts) for item in value]
    if not isinstance(value, dict) or parts[0] not in value:
        return value
    head, rest = parts[0], parts[1:]
    return {**value, head: _mask(value[head], rest) if rest else MASK}


#: redacted paths of every ``@job`` declared in this process, by job name (for jobs enqueued without the paths in
#: their payload: by stock arq, or before the job named any)
_DECLARED: dict[str, tuple[str, ...]] = {}


def declare(function: str, paths: Iterable[str]) -> None:
    """Note that ``function``'s arguments at ``paths`` are redacted (``@job(redact=...)`` calls this). Paths only
    add up: a later spec of the same name (a copy, another declaration) never un-hides what one hid."""
    if paths := tuple(paths):
        _DECLARED[function] = tuple(dict.fromkeys((*_DECLARED.get(function, ()), *paths)))


def redacted_paths(function: str | None, definition: Any = None) -> tuple[str, ...]:
    """The paths to mask in the arguments of a job of ``function``: those declared in this process and those its
    decoded job dict ``definition`` carries (:data:`REDACT_KEY`); never raises on odd data."""
    declared = _DECLARED.get(function or "", ())
    carried = definition.get(REDACT_KEY) if isinstance(definition, dict) else None
    if not isinstance(carried, list):
        return declared
    return (*declared, *(p for p in carried if isinstance(p, str) and p and p not in declared))


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
