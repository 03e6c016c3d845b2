"""The wire format: JSON in a versioned envelope, optionally HMAC-signed. Never pickle.

Every value arq writes to Redis (job definitions and results) passes through :class:`Codec`, which is
handed to arq as ``job_serializer`` / ``job_deserializer``; arq's own tools (``Job.status()``,
``Job.result()``, ``enqueue_job``) therefore read and write our format.

Envelope: ``{"v": 1, "d": <arq's dict>}``; with a secret, ``{"v": 1, "sig": <hex>, "d": …}`` where the
signature is HMAC-SHA256 over the canonical (sorted-keys) JSON of ``d``. A job written by our client is signed
for its identity: ``{"v": 1, "sig": …, "id": <job id>, "q": <queue>, "d": …}``, the HMAC covering id, queue and
``d`` (which names the function), so a worker refuses the payload copied under another id or queue. arq ignores
the extra keys; with no secret the envelope is the plain one, which a stock arq worker reads given this codec.

Exceptions (arq stores a failed job's exception as its result) travel as ``{"$error": {"type", "message"}}``
and come back as :class:`~src.runner.errors.JobFailed` (or ``CancelledError`` for an abort, which arq's
``Job.abort`` expects).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Iterable
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
    """JSON codec with optional HMAC-SHA256 signing, usable as arq's serializer pair.

    ``secret`` signs; it and the ``previous`` secrets verify, so a key can be rotated while jobs signed with
    the old one are still queued (see the README's "Rotating the signing secret").
    """

    __slots__ = ("_keys", "_secret")

    def __init__(self, secret: str | bytes | None = None, previous: Iterable[str | bytes] = ()) -> None:
        self._secret = _key(secret) if secret is not None else None
        older = [_key(p) for p in previous]
        if older and self._secret is None:
            raise ValueError("previous signing secrets need a current signing secret (they only verify)")
        self._keys = ([self._secret] if self._secret is not None else []) + older

    def __repr__(self) -> str:
        return f"Codec(signs={self.signs}, verify_keys={len(self._keys)})"

    @property
    def signs(self) -> bool:
        return self._secret is not None

    def dumps(self, data: dict[str, Any]) -> bytes:
        """Encode one arq dict (a result, or a job written by arq's own client) into envelope bytes;
        :class:`PayloadError` if it is not JSON. Jobs of our client go through :meth:`dumps_job`."""
        try:
            body = self._body(data)
        except orjson.JSONEncodeError as e:
            raise PayloadError(f"cannot encode as JSON: {e}") from None
        if self._secret is None:
            return b'{"v":%d,"d":%b}' % (WIRE_VERSION, body)
        return b'{"v":%d,"sig":"%b","d":%b}' % (WIRE_VERSION, _mac(self._secret, body).encode(), body)

    def dumps_job(self, data: dict[str, Any], job_id: str, queue: str) -> bytes:
        """Encode a job to be stored as ``job_id`` in ``queue``. With a secret, the signature covers the id
        and the queue too, so a worker refuses the payload copied under another id or into another queue."""
        if self._secret is None:
            return self.dumps(data)  # unsigned: exactly what arq's own client would write
        try:
            body = self._body(data)
        except orjson.JSONEncodeError as e:
            raise PayloadError(f"cannot encode as JSON: {e}") from None
        sig = _mac(self._secret, _job_message(job_id, queue, body)).encode()
        identity = orjson.dumps(job_id), orjson.dumps(queue)
        return b'{"v":%d,"sig":"%b","id":%b,"q":%b,"d":%b}' % (WIRE_VERSION, sig, *identity, body)

    def _body(self, data: dict[str, Any]) -> bytes:
        # signed bodies are canonical (sorted keys) so a verifier re-encoding the decoded dict gets the same bytes
        option = orjson.OPT_SORT_KEYS if self._secret is not None else None
        return orjson.dumps(data, default=_default, option=option)

    def loads(self, raw: bytes, *, job_id: str | None = None, queue: str | None = None) -> dict[str, Any]:
        """Decode and (with a secret) verify envelope bytes; raises :class:`PayloadError` saying why.

        A worker passes the ``job_id`` and ``queue`` it claimed the payload under: with a secret, only a payload
        signed for exactly that job and queue is accepted. Without them (arq's ``Job.info()``, results) a job
        payload is verified against the identity it carries.
        """
        try:
            envelope = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise PayloadError(f"payload is not JSON ({e}){_pickle_hint(raw)}") from None
        if not isinstance(envelope, dict) or "d" not in envelope:
            raise PayloadError("payload is not a job envelope")
        if envelope.get("v") != WIRE_VERSION:
            raise PayloadError(f"unsupported envelope version {envelope.get('v')!r}, expected {WIRE_VERSION}")
        data = envelope["d"]
        if not isinstance(data, dict):
            raise PayloadError("envelope data is not an object")
        if self._keys:
            self._verify(envelope, data, job_id, queue)
        _revive_error(data)
        return data

    def _verify(self, envelope: dict[str, Any], data: dict[str, Any], job_id: str | None, queue: str | None) -> None:
        sig = envelope.get("sig")
        if sig is None:
            raise SignatureError("payload is unsigned but a signing secret is configured")
        if not isinstance(sig, str) or len(sig) != _SIG_HEX_LEN or not sig.isascii():
            raise SignatureError(f"payload signature is malformed (expected {_SIG_HEX_LEN} hex digits)")
        body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        signed_id, signed_queue = envelope.get("id"), envelope.get("q")
        if job_id is not None or queue is not None:
            if signed_id is None and signed_queue is None:
                raise SignatureError("payload is not signed for a job id and queue (not written by our client)")
            if (job_id is not None and signed_id != job_id) or (queue is not None and signed_queue != queue):
                raise SignatureError("payload is signed for another job id or queue (copied from another job?)")
        if signed_id is not None or signed_queue is not None:
            if not isinstance(signed_id, str) or not isinstance(signed_queue, str):
                raise SignatureError("payload's signed job id and queue are malformed")
            body = _job_message(signed_id, signed_queue, body)
        given = sig.encode()
        # compare_digest on equal-length ASCII bytes: never a TypeError, whatever the payload holds
        if not any(hmac.compare_digest(_mac(key, body).encode(), given) for key in self._keys):
            raise SignatureError("payload signature does not match (altered, or signed with another secret)")


#: an HMAC-SHA256 in hex
_SIG_HEX_LEN = 64


def _key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("a signing secret must not be empty")
    return key


def _mac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _job_message(job_id: str, queue: str, body: bytes) -> bytes:
    """What a job's signature covers: its id and queue, then its body (which names the function). The JSON array
    ends unambiguously, and no plain body (a JSON object) starts with the prefix, so a signed result can never
    pass for a job."""
    return b"job:" + orjson.dumps([job_id, queue]) + body


#: pickle's protocol-2+ opcode, the first byte of what arq's default serializer writes
_PICKLE_START = 0x80


def _pickle_hint(raw: bytes) -> str:
    if raw[:1] == bytes([_PICKLE_START]):
        return (
            "; it looks like pickle, arq's default: give the arq producer our codec, "
            "create_pool(..., job_serializer=Codec().dumps, job_deserializer=Codec().loads)"
        )
    return ""


class SerializerPair(Codec):
    """A user's own arq serializer pair (``job_serializer`` / ``job_deserializer``, e.g. msgpack) in place of
    our JSON envelope. It cannot sign: a signing secret needs the JSON codec."""

    __slots__ = ("_deserializer", "_serializer")

    def __init__(self, serializer: Callable[[dict[str, Any]], bytes], deserializer: Callable[[bytes], Any]) -> None:
        super().__init__()
        self._serializer = serializer
        self._deserializer = deserializer

    def __repr__(self) -> str:
        return f"SerializerPair({self._serializer!r}, {self._deserializer!r})"

    def dumps(self, data: dict[str, Any]) -> bytes:
        try:
            return self._serializer(data)
        except Exception as e:
            raise PayloadError(f"job_serializer failed: {type(e).__name__}: {e}") from None

    def dumps_job(self, data: dict[str, Any], job_id: str, queue: str) -> bytes:
        return self.dumps(data)

    def loads(self, raw: bytes, *, job_id: str | None = None, queue: str | None = None) -> dict[str, Any]:
        try:
            data = self._deserializer(raw)
        except Exception as e:
            raise PayloadError(f"job_deserializer failed: {type(e).__name__}: {e}") from None
        if not isinstance(data, dict):
            raise PayloadError(f"job_deserializer returned {type(data).__name__}, not a dict")
        return data
