"""A workflow's graph as it stands, read from its state (``WorkflowHandle.info()``, ``hasten workflow``, the
dashboard): the workflow's status and error, and each step's function, status, job id, inputs and result."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from . import constants as k
from .codec import Codec
from .errors import JobNotFound, PayloadError
from .workflow_ids import state_key, step_id
from .workflow_steps import decode_result

__all__ = ["StepInfo", "WorkflowInfo", "read_workflow"]


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of a workflow: ``status`` is held (waits for others), queued, running, done, failed, aborted or
    cancelled."""

    index: int
    job_id: str
    function: str
    status: str
    #: the steps it takes its input from
    after: tuple[int, ...]
    #: its result (JSON form), once done
    result: Any = None
    #: why its recorded result could not be read (another signing secret), when it could not (operators' reads only)
    result_error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """A snapshot of a workflow: ``status`` is running, complete or failed; ``error`` names the failed step."""

    workflow_id: str
    status: str
    error: str | None
    steps: tuple[StepInfo, ...]
    #: the queue its steps run in, what a failed step does to the others (cancel, continue), when it was enqueued and
    #: when it ended (epoch ms)
    queue: str | None = None
    on_failure: str | None = None
    enqueued_ms: int | None = None
    ended_ms: int | None = None


async def read_workflow(
    redis: Redis, codec: Codec, workflow_id: str, queue: str, *, strict: bool = True
) -> WorkflowInfo:
    """``workflow_id``'s graph (:class:`JobNotFound` if its state is gone). Results are verified for their step and
    ``queue`` (the one recorded in the state wins); a result that cannot be read raises :class:`PayloadError`, or
    with ``strict`` off is left out and said why (``StepInfo.result_error``)."""
    raw_state = await cast("Awaitable[dict[bytes, bytes]]", redis.hgetall(state_key(workflow_id)))
    if not raw_state:
        raise JobNotFound(f"workflow {workflow_id} not found (never enqueued, or its state expired)")
    state = {key.decode(): value.decode(errors="replace") for key, value in raw_state.items()}
    queue = state.get("queue", queue)
    count = int(state["steps"])
    ids = [step_id(workflow_id, i) for i in range(count)]
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(k.in_progress_key_prefix + job_id)
        running = await pipe.execute()
    after: dict[int, list[int]] = {i: [] for i in range(count)}
    for i in range(count):
        for successor in filter(None, state.get(f"n:{i}", "").split(",")):
            after[int(successor)].append(i)
    steps = []
    for i in range(count):
        status = state.get(f"st:{i}", "held")
        if status == "queued" and running[i]:
            status = "running"
        result, error = None, None
        raw = raw_state.get(f"r:{i}".encode())
        if raw is not None:
            try:
                result = decode_result(codec, raw, ids[i], queue)
            except PayloadError as e:
                if strict:
                    raise
                error = f"{type(e).__name__}: {e}"
        steps.append(StepInfo(i, ids[i], state.get(f"f:{i}", "?"), status, tuple(after[i]), result, error))
    return WorkflowInfo(
        workflow_id, state["status"], state.get("error"), tuple(steps), queue, state.get("on_failure"),
        _ms(state.get("enqueued_ms")), _ms(state.get("ended_ms")),
    )  # fmt: skip


def _ms(value: str | None) -> int | None:
    return None if value is None else int(value)
