"""The worker's side of a workflow step: fill in its input before it runs, and note its final outcome for the
finish script, which advances the workflow in the same call that writes the outcome (``scripts/finish.lua``)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from .finish import Outcome
from .retry import Permanent
from .workflow_ids import state_key, step_of

__all__ = ["InputMissing", "note", "with_input"]


class InputMissing(Permanent):
    """A step's input is not in its workflow's state (the state expired): no retry brings it back."""


async def with_input(redis: Redis, job_id: str, wire: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the step's input added: the results of the steps before it (``wire``: what the client
    wrote into the payload, ``workflow_plan.Step.wire``), one value or, after a group, the list in order."""
    found = step_of(job_id)
    if found is None:
        raise InputMissing(f"job {job_id} takes a workflow input but is not a workflow step")
    inputs = [int(i) for i in wire["from"]]
    reading = redis.hmget(state_key(found[0]), [f"r:{i}" for i in inputs])
    values = await cast("Awaitable[list[bytes | None]]", reading)
    missing = [i for i, value in zip(inputs, values, strict=True) if value is None]
    if missing:
        raise InputMissing(f"the result of step {missing[0]} is gone from workflow {found[0]} (expired?)")
    decoded = [orjson.loads(value or b"") for value in values]
    return {**kwargs, str(wire["arg"]): decoded if wire["list"] else decoded[0]}


def note(outcome: Outcome, value: Any) -> bytes:
    """What the finish script records for a step's final outcome: its value as JSON when it completed, else how it
    ended (the script names the step, its function and job id before it: the workflow's error)."""
    if outcome.succeeded:
        return orjson.dumps(value)
    if outcome.failure is not None:
        error = outcome.failure.error
        return f"failed for good: {type(error).__name__}: {error}".removesuffix(": ").encode()
    return b"was aborted"
