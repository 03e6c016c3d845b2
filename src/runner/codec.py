"""The wire format: JSON in a versioned envelope, optionally HMAC-signed. Never pickle.

Every value arq writes to Redis (job definitions and results) passes through :class:`Codec`, which is
handed to arq as ``job_serializer`` / ``job_deserializer``; arq's own tools (``Job.status()``,
``Job.result()``, ``enqueue_job``) therefore read and write our format.

Envelope: ``{"v": 1, "d": <arq's dict>}``; with a secret, ``{"v": 1, "sig": <hex>, "d": …}`` where the
signature is HMAC-SHA256 over the canonical (sorted-keys) JSON of ``d``. Exceptions (arq stores a failed
job's exception as its result) travel as ``{"$error": {"type", "message"}}`` and come back as
:class:`~src.runner.errors.JobFailed` (or ``CancelledError`` for an abort, which arq's ``Job.abort`` expects).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import orjson
from arq.jobs import SerializationError
from pydantic import BaseModel

from .constants import WIRE_VERSION
from .errors import JobFailed, PayloadError, SignatureError

_ERROR_KEY = "$error"


def _default(value: Any) -> Any:
    """orjson hook for the types it does not know."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, BaseException):
        return {_ERROR_KEY: describe_exception(value)}
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def describe_exception(exc: BaseException) -> dict[str, str]:
    """Type and message of an exception, looking through arq's generic (de)serialization wrapper."""
    message = str(exc)
    cause = exc.__cause__
    if isinstance(exc, SerializationError) and cause is not None:
        # arq wraps every codec failure as "unable to deserialize job"; keep the reason it hides
        message = f"{message}: {type(cause).__name__}: {cause}"
    return {"type": type(exc).__name__, "message": message}


def _revive_error(data: dict[str, Any]) -> None:
    """Turn a result's encoded exception back into an exception object, as arq's ``Job.result`` expects."""
    result = data.get("r")
    if data.get("s") is False and isinstance(result, dict) and _ERROR_KEY in result:
        err = result[_ERROR_KEY]
        if err.get("type") == "CancelledError":
            data["r"] = asyncio.CancelledError(err.get("message", ""))
        else:
            data["r"] = JobFailed(str(err.get("type", "Exception")), str(err.get("message", "")))


class Codec:
    """JSON codec with optional HMAC-SHA256 signing, usable as arq's serializer pair."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str | bytes | None = None) -> None:
        self._secret = secret.encode() if isinstance(secret, str) else secret

    @property
    def signs(self) -> bool:
        return self._secret is not None

    def dumps(self, data: dict[str, Any]) -> bytes:
        """Encode one arq dict (job or result) into envelope bytes; :class:`PayloadError` if it is not JSON."""
        try:
            return self._dumps(data)
        except orjson.JSONEncodeError as e:
            raise PayloadError(f"cannot encode as JSON: {e}") from None

    def _dumps(self, data: dict[str, Any]) -> bytes:
        if self._secret is None:
            body = orjson.dumps(data, default=_default)
            return b'{"v":%d,"d":%b}' % (WIRE_VERSION, body)
        body = orjson.dumps(data, default=_default, option=orjson.OPT_SORT_KEYS)
        sig = hmac.new(self._secret, body, hashlib.sha256).hexdigest().encode()
        return b'{"v":%d,"sig":"%b","d":%b}' % (WIRE_VERSION, sig, body)

    def loads(self, raw: bytes) -> dict[str, Any]:
        """Decode and (with a secret) verify envelope bytes; raises :class:`PayloadError` saying why."""
        try:
            envelope = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise PayloadError(f"payload is not JSON ({e})") from None
        if not isinstance(envelope, dict) or "d" not in envelope:
            raise PayloadError("payload is not a job envelope")
        if envelope.get("v") != WIRE_VERSION:
            raise PayloadError(f"unsupported envelope version {envelope.get('v')!r}, expected {WIRE_VERSION}")
        data = envelope["d"]
        if not isinstance(data, dict):
            raise PayloadError("envelope data is not an object")
        if self._secret is not None:
            self._verify(envelope.get("sig"), data)
        _revive_error(data)
        return data

    def _verify(self, sig: object, data: dict[str, Any]) -> None:
        assert self._secret is not None
        if not isinstance(sig, str):
            raise SignatureError("payload is unsigned but a signing secret is configured")
        body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        expected = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig):
            raise SignatureError("payload signature does not match (altered, or signed with another secret)")
