"""The typed job context outside a worker's happy path: missing state, no Redis, its own HTTP client."""

from __future__ import annotations

from datetime import datetime

import pytest

from src.runner import JobContext, Permanent


class AppState:
    pass


def _ctx(**kwargs: object) -> JobContext:
    return JobContext("j", 1, 1, datetime.now(), "f", **kwargs)  # type: ignore[arg-type]


def test_state_must_be_there_and_of_its_kind() -> None:
    with pytest.raises(Permanent, match="no worker state"):
        _ctx().state(AppState)
    with pytest.raises(Permanent, match="not a AppState"):
        _ctx(_state="a string").state(AppState)
    state = AppState()
    assert _ctx(_state=state).state(AppState) is state


async def test_without_redis_and_without_a_worker() -> None:
    ctx = _ctx()
    with pytest.raises(RuntimeError, match="without Redis"):
        _ = ctx.redis
    await ctx.progress(0.5)  # nowhere to show it: no error
    with pytest.raises(ValueError, match="fraction"):
        await ctx.progress(2)
    http = ctx.http  # its own client, closed with the context
    assert ctx.http is http
    assert ctx.logger is ctx.logger
    await ctx.aclose()
    assert http.is_closed
