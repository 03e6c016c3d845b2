from __future__ import annotations

import asyncio

import orjson
import pytest
from arq.jobs import DeserializationError, deserialize_job_raw

from src.runner import Codec, JobFailed, PayloadError, SignatureError
from src.runner.codec import describe_exception
from tests.sample_jobs import Point

JOB: dict[str, object] = {"t": None, "f": "add", "a": [], "k": {"a": 1, "b": 2}, "et": 1700000000000}


def test_round_trip_is_json_in_a_versioned_envelope() -> None:
    raw = Codec().dumps(JOB)
    assert orjson.loads(raw) == {"v": 1, "d": JOB}
    assert Codec().loads(raw) == JOB


def test_models_and_sets_are_encoded_as_json() -> None:
    raw = Codec().dumps({"k": {"p": Point(x=1, y=2), "s": {3, 1}}})
    assert Codec().loads(raw) == {"k": {"p": {"x": 1, "y": 2}, "s": [1, 3]}}


def test_unknown_types_are_refused_not_pickled() -> None:
    with pytest.raises(PayloadError, match=r"cannot encode as JSON: .*not JSON serializable"):
        Codec().dumps({"k": {"x": object()}})
    with pytest.raises(PayloadError, match="64-bit"):
        Codec().dumps({"k": {"x": 10**30}})


def test_signed_round_trip() -> None:
    codec = Codec("s3cret")
    raw = codec.dumps(JOB)
    assert b'"sig":' in raw
    assert codec.loads(raw) == JOB


def test_altered_payload_is_refused() -> None:
    codec = Codec("s3cret")
    raw = codec.dumps(JOB).replace(b'"a":1', b'"a":9')
    with pytest.raises(SignatureError, match="does not match"):
        codec.loads(raw)


def test_other_secret_is_refused() -> None:
    with pytest.raises(SignatureError):
        Codec("a").loads(Codec("b").dumps(JOB))


def test_unsigned_payload_is_refused_when_a_secret_is_set() -> None:
    with pytest.raises(SignatureError, match="unsigned"):
        Codec("s3cret").loads(Codec().dumps(JOB))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x80\x04\x95pickle", "not JSON"),
        (b"[1, 2]", "not a job envelope"),
        (b'{"v": 2, "d": {}}', "unsupported envelope version 2"),
        (b'{"v": 1, "d": []}', "not an object"),
    ],
)
def test_garbage_is_refused_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        Codec().loads(raw)


def test_failed_result_comes_back_as_job_failed() -> None:
    raw = Codec().dumps({**JOB, "s": False, "r": ValueError("bad value")})
    assert Codec().loads(raw)["r"] == JobFailed("ValueError", "bad value")


def test_aborted_result_comes_back_as_cancelled_error() -> None:
    # arq's Job.abort() recognises an abort by this type
    raw = Codec().dumps({**JOB, "s": False, "r": asyncio.CancelledError()})
    assert isinstance(Codec().loads(raw)["r"], asyncio.CancelledError)


def test_arq_wrapped_decode_error_keeps_its_reason() -> None:
    with pytest.raises(DeserializationError) as info:
        deserialize_job_raw(b"garbage", deserializer=Codec().loads)
    described = describe_exception(info.value)
    assert described["type"] == "DeserializationError"
    assert "PayloadError: payload is not JSON" in described["message"]
