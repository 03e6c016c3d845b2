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


def test_job_signature_covers_id_and_queue() -> None:
    codec = Codec("s3cret")
    raw = codec.dumps_job(JOB, "job-1", "arq:queue")
    assert orjson.loads(raw)["id"] == "job-1" and orjson.loads(raw)["q"] == "arq:queue"
    assert codec.loads(raw, job_id="job-1", queue="arq:queue") == JOB
    assert codec.loads(raw) == JOB  # arq's Job.info() reads it without knowing the id
    with pytest.raises(SignatureError, match="another job id or queue"):
        codec.loads(raw, job_id="job-2", queue="arq:queue")
    with pytest.raises(SignatureError, match="another job id or queue"):
        codec.loads(raw, job_id="job-1", queue="other")
    # rewriting the identity in the envelope does not help: the signature covers it
    forged = raw.replace(b'"id":"job-1"', b'"id":"job-2"')
    with pytest.raises(SignatureError, match="does not match"):
        codec.loads(forged, job_id="job-2", queue="arq:queue")
    # nor does changing the function
    with pytest.raises(SignatureError, match="does not match"):
        codec.loads(raw.replace(b'"f":"add"', b'"f":"rm"'), job_id="job-1", queue="arq:queue")


def test_unsigned_job_payload_is_plain_arq_envelope() -> None:
    # wire compatibility: without a secret a stock arq worker given our codec reads what our client writes
    assert orjson.loads(Codec().dumps_job(JOB, "job-1", "arq:queue")) == {"v": 1, "d": JOB}
    assert Codec().loads(Codec("s").dumps_job(JOB, "j", "q")) == JOB  # extra keys are ignored


def test_signed_value_without_identity_is_not_a_job() -> None:
    codec = Codec("s3cret")
    with pytest.raises(SignatureError, match="not signed for a job id and queue"):
        codec.loads(codec.dumps(JOB), job_id="job-1", queue="arq:queue")


@pytest.mark.parametrize("sig", ["é" * 64, "ab", "0" * 65, "", 12, ["x"], "\x00" * 64])
def test_malformed_signature_is_a_signature_error(sig: object) -> None:
    raw = orjson.dumps({"v": 1, "sig": sig, "d": JOB})
    with pytest.raises(SignatureError):
        Codec("s3cret").loads(raw)
    with pytest.raises(SignatureError):
        Codec("s3cret").loads(orjson.dumps({"v": 1, "sig": sig, "id": "j", "q": "q", "d": JOB}), job_id="j", queue="q")


def test_rotation_signs_with_the_new_key_and_verifies_with_old_ones() -> None:
    old, rotated, retired = Codec("old"), Codec("new", previous=["old"]), Codec("new")
    from_old = old.dumps_job(JOB, "j", "q")
    assert rotated.loads(from_old, job_id="j", queue="q") == JOB
    assert rotated.loads(old.dumps(JOB)) == JOB  # results written before the rotation stay readable
    from_new = rotated.dumps_job(JOB, "j", "q")
    assert retired.loads(from_new, job_id="j", queue="q") == JOB
    with pytest.raises(SignatureError):
        old.loads(from_new)
    with pytest.raises(SignatureError, match="does not match"):
        retired.loads(from_old, job_id="j", queue="q")


def test_previous_secrets_need_a_current_one() -> None:
    with pytest.raises(ValueError, match="need a current signing secret"):
        Codec(None, previous=["old"])
    assert "old" not in repr(Codec("new", previous=["old"])) and "new" not in repr(Codec("new"))
