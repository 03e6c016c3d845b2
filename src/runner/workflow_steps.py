"""The worker's side of a workflow step: fill in its input before it runs, and note its final outcome for the
finish script, which advances the workflow in the same call that writes the outcome (``scripts/finish.lua``).

A step's result is kept in the workflow's state as the codec's envelope of ``{"r": value}``, signed for that step
(its job id and queue) when a signing secret is set: the step after it, and the client reading the workflow's result,
take only a value a worker with the secret wrote for that step — an input is an argument, and is trusted no more.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

from redis.asyncio import Redis

from .codec import Codec
from .errors import PayloadError
from .finish import Outcome
from .retry import Permanent
from .workflow_ids import state_key, step_id, step_of

__all__ = ["InputMissing", "InputRefused", "decode_result", "encode_result", "failure_note", "with_input"]


class InputMissing(Permanent):
    """A step's input is not in its workflow's state (the state expired): no retry brings it back."""


class InputRefused(Permanent):
    """A step's input in its workflow's state cannot be read, or is not signed for the step it comes from."""


def encode_result(codec: Codec, job_id: str, queue: str, value: Any) -> bytes:
    """What the finish script records as step ``job_id``'s result (:class:`PayloadError` if it is not JSON)."""
    return codec.dumps_job({"r": value}, job_id, queue)


def decode_result(codec: Codec, raw: bytes, job_id: str, queue: str) -> Any:
    """Step ``job_id``'s result as recorded; :class:`PayloadError` if it is not one, or not signed for the step."""
    data = codec.loads(raw, job_id=job_id, queue=queue)
    if "r" not in data:
        raise PayloadError("not a step's result")
    return data["r"]


async def with_input(
    redis: Redis, codec: Codec, queue: str, job_id: str, wire: dict[str, Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``kwargs`` with the step's input added: the results of the steps before it (``wire``: what the client
    wrote into the payload, ``workflow_plan.Step.wire``), one value or, after a group, the list in order."""
    found = step_of(job_id)
    if found is None:
        raise InputMissing(f"job {job_id} takes a workflow input but is not a workflow step")
    workflow_id = found[0]
    inputs = [int(i) for i in wire["from"]]
    reading = redis.hmget(state_key(workflow_id), [f"r:{i}" for i in inputs])
    values = await cast("Awaitable[list[bytes | None]]", reading)
    decoded = []
    for i, raw in zip(inputs, values, strict=True):
        if raw is None:
            raise InputMissing(f"the result of step {i} is gone from workflow {workflow_id} (expired?)")
        try:
            decoded.append(decode_result(codec, raw, step_id(workflow_id, i), queue))
        except PayloadError as e:
            raise InputRefused(f"the result of step {i} in workflow {workflow_id} is refused: {e}") from None
    return {**kwargs, str(wire["arg"]): decoded if wire["list"] else decoded[0]}


def failure_note(outcome: Outcome) -> bytes:
    """How a step's final outcome that is no success ended, for the finish script (which names the step, its
    function and job id before it: the workflow's error)."""
    if outcome.failure is not None:
        error = outcome.failure.error
        return f"failed for good: {type(error).__name__}: {error}".removesuffix(": ").encode()
    return b"was aborted"
