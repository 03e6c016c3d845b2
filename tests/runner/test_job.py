from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from src.runner import ArgumentsInvalid, Backoff, JobContext, Permanent, ResultInvalid, job
from tests.sample_jobs import Point, add, lies, move


def test_name_and_defaults() -> None:
    assert add.name == "add"
    assert add.retry == Backoff()
    assert add.timeout_s is None


def test_arguments_are_validated_and_encoded_as_json() -> None:
    assert move.encode_args((Point(x=1, y=2),), {"dx": 3}) == {"point": {"x": 1, "y": 2}, "dx": 3}
    assert move.encode_args(({"x": 1, "y": 2}, 3), {}) == {"point": {"x": 1, "y": 2}, "dx": 3}
    assert add.encode_args((1,), {}) == {"a": 1, "b": 1}


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("x",), {}, "a: Input should be a valid integer"),
        ((), {}, "a: Field required"),
        ((1, 2, 3), {}, "takes 2 arguments but 3 were given"),
        ((1,), {"a": 2}, "multiple values for argument 'a'"),
        ((1,), {"c": 2}, "c: Extra inputs are not permitted"),
    ],
)
def test_bad_arguments_say_which_and_why(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgumentsInvalid, match=message):
        add.encode_args(args, kwargs)


def test_nested_model_errors_name_the_field() -> None:
    with pytest.raises(ArgumentsInvalid, match=r"point\.y: Input should be greater than or equal to 0"):
        move.encode_args(({"x": 1, "y": -1}, 0), {})


def test_result_is_validated_against_the_annotation() -> None:
    assert add.encode_result(3) == 3
    with pytest.raises(ResultInvalid, match="lies"):
        lies.encode_result("not a number")


async def test_the_worker_side_shortcuts_still_refuse_what_they_must() -> None:
    """A job without parameters skips its argument model and a ``-> None`` job its result adapter only when nothing
    could fail: arguments sent anyway, or a value returned, are still refused when the job runs."""

    @job
    async def no_params(ctx: JobContext) -> None:
        return "a value"  # type: ignore[return-value]

    ctx = JobContext("id", 1, 1, datetime.now(UTC), "no_params")
    with pytest.raises(ArgumentsInvalid, match="takes 0 arguments but 1 were given"):
        await no_params.invoke(ctx, (1,), {})
    with pytest.raises(ArgumentsInvalid, match="x: Extra inputs are not permitted"):
        await no_params.invoke(ctx, (), {"x": 1})
    with pytest.raises(ResultInvalid, match="no_params"):
        await no_params.invoke(ctx, (), {})
    assert no_params.encode_result(None) is None
    assert await add.invoke(ctx, (1,), {"b": 2}) == 3


def test_decorator_refuses_what_it_cannot_validate() -> None:
    with pytest.raises(TypeError, match="named function"):
        job(lambda ctx: None)

    async def untyped(ctx: JobContext, x) -> None:
        pass

    with pytest.raises(TypeError, match="needs a type annotation"):
        job(untyped)

    async def variadic(ctx: JobContext, *xs: int) -> None:
        pass

    with pytest.raises(TypeError, match="plain named parameter"):
        job(variadic)


def test_options_copy_does_not_change_the_spec() -> None:
    scheduled = add.options(job_id="x", defer_by=5)
    assert scheduled.enqueue_options.job_id == "x"
    assert add.enqueue_options.job_id is None
    with pytest.raises(ValueError, match="either"):
        add.options(defer_by=1, defer_until=__import__("datetime").datetime.now())


def test_backoff_delays_grow_within_jitter_and_cap() -> None:
    policy = Backoff(max_tries=10, base_s=1, max_s=5, jitter=0.5)
    for job_try, ceiling in [(1, 1), (2, 2), (3, 4), (4, 5), (9, 5)]:
        delays = [policy.delay_s(job_try) for _ in range(200)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > 0  # jitter is applied


def test_backoff_decides_which_errors_retry() -> None:
    policy = Backoff(max_tries=3, retry_on=(ConnectionError,))
    assert policy.retries(ConnectionError(), 1)
    assert not policy.retries(ConnectionError(), 3)  # tries exhausted
    assert not policy.retries(ValueError(), 1)  # not listed
    assert not Backoff().retries(Permanent(), 1)
    assert not Backoff().retries(ArgumentsInvalid(), 1)
    with pytest.raises(ValueError):
        Backoff(max_tries=0)
    with pytest.raises(ValueError, match="must not be negative"):
        Backoff(base_s=-1)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)
