"""Enqueueing a workflow (``canvas.py``) in one round trip, and :class:`WorkflowHandle`: its result and its graph.

Every step is written at enqueue (``scripts/workflow.lua``): its job key, and its place in the workflow's state. The
steps that wait for nothing go into the queue; the others are held, and the finish script queues each one when its
last input is done — in the same call that records that input (``scripts/finish.lua``): no poller, no unlock loop.
A workflow runs in one queue: its state and its steps' keys carry the queue's hash tag (``workflow_ids.py``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from . import constants as k
from .canvas import Flow
from .errors import JobNotFound, ResultNotReady, WorkflowFailed
from .result_waiters import wait_turn
from .scripts import script
from .workflow_ids import WORKFLOW_INPUT_KEY, new_workflow_id, state_key, step_id
from .workflow_info import StepInfo, WorkflowInfo, read_workflow
from .workflow_plan import Plan, Step, plan
from .workflow_steps import decode_result

if TYPE_CHECKING:
    from .client import JobClient, _Prepared
    from .job import JobSpec

__all__ = ["OnFailure", "StepInfo", "WorkflowHandle", "WorkflowInfo", "enqueue_workflow"]

R = TypeVar("R")

#: what a member that fails for good does to the members still queued or running: ``cancel`` them (the default), or
#: let them ``continue`` to their end (their results are recorded); steps that wait for others never run either way
OnFailure = Literal["cancel", "continue"]

_POLL_MAX_S = 0.05


async def enqueue_workflow(
    client: JobClient, flow: Flow[R], *, queue_name: str | None = None, on_failure: OnFailure = "cancel",
    keep_result_s: float | None = None,
) -> WorkflowHandle[R]:  # fmt: skip
    """Validate every step, then write the workflow in one call; see :meth:`JobClient.enqueue_workflow`."""
    if on_failure not in ("cancel", "continue"):
        raise ValueError(f"on_failure must be 'cancel' or 'continue', not {on_failure!r}")
    keep_s = k.DEFAULT_KEEP_RESULT_S if keep_result_s is None else keep_result_s
    if keep_s <= 0:
        raise ValueError("keep_result_s must be above 0: a workflow's result is read from its state")
    laid = plan(flow)
    queue = _queue_of(laid, queue_name, client.queue_name)
    workflow_id = new_workflow_id(queue)
    prepared: list[_Prepared] = []
    for step in laid.steps:
        _refuse_options(step)
        options = replace(step.spec.enqueue_options, job_id=step_id(workflow_id, step.index), queue_name=queue)
        wire = step.wire()
        extra = None if wire is None else {WORKFLOW_INPUT_KEY: wire}
        prepared.append(client._prepare(step.spec, step.kwargs, extra=extra, options=options))
    keep_ms = int(keep_s * 1000)
    fields: dict[str, str | int] = {
        "status": "running", "on_failure": on_failure, "steps": len(laid.steps), "left": len(laid.final),
        "final": ",".join(map(str, laid.final)), "final_list": int(laid.final_is_list), "keep_ms": keep_ms,
        "enqueued_ms": int(time.time() * 1000), "queue": queue,
    }  # fmt: skip
    for step in laid.steps:
        fields[f"f:{step.index}"] = step.spec.name
        fields[f"st:{step.index}"] = "held" if step.inputs else "queued"
        fields[f"n:{step.index}"] = ",".join(map(str, step.successors))
        fields[f"p:{step.index}"] = len(step.inputs)
    args: list[str | int | bytes] = [
        k.MAX_WAKE_TOKENS, int(time.time() * 1000), max(job.ttl_ms for job in prepared) + keep_ms, len(fields),
        *(item for pair in fields.items() for item in pair),
    ]  # fmt: skip
    for step, job in zip(laid.steps, prepared, strict=True):
        args += [job.job_id, job.payload, job.ttl_ms, 0 if step.inputs else 1, job.limit]
    keys = [queue, k.WAKE_KEY_PREFIX + queue, state_key(workflow_id)]
    await script(client.redis, "workflow")(keys=keys, args=args)
    if client.enqueue_counter is not None:  # every step's job is written now, held or queued
        for step in laid.steps:
            client.enqueue_counter.add(queue, step.spec.name, 1)
    return WorkflowHandle(client, workflow_id, queue, [laid.steps[i].spec for i in laid.final], laid.final_is_list)


def _queue_of(laid: Plan, explicit: str | None, default: str) -> str:
    """The one queue all steps run in: ``explicit``, else the one their jobs are set for, else ``default``."""
    chosen = {s.spec.enqueue_options.queue_name for s in laid.steps} | {explicit}
    chosen.discard(None)
    if len(chosen) > 1:
        raise ValueError(f"a workflow runs in one queue, but it and its steps are set for {sorted(map(str, chosen))}")
    return str(chosen.pop()) if chosen else default


def _refuse_options(step: Step) -> None:
    options = step.spec.enqueue_options
    for name in ("job_id", "defer_by", "defer_until"):
        if getattr(options, name) is not None:
            raise ValueError(
                f"step {step.index} {step.spec.name}(): {name} is not honoured in a workflow (a step's id is made "
                "from the workflow's, and it runs as soon as the steps before it are done); set it on a plain job"
            )
    limits = step.spec.limits
    if step.inputs and limits is not None and limits.key is not None and not isinstance(limits.key, str):
        raise ValueError(
            f"step {step.index} {step.spec.name}(): its limit is per key, taken by a function of its arguments, "
            "and one of them is the result of the steps before it, unknown at enqueue; name the key's parameter "
            "(concurrency_key='<parameter>') or make it the workflow's first step"
        )
    if step.inputs and limits is not None and limits.key is not None and limits.key == step.input_arg:
        raise ValueError(
            f"step {step.index} {step.spec.name}(): its limit is per key, taken from {step.input_arg!r}, which is the "
            "result of the steps before it, unknown at enqueue; key it by another parameter"
        )
    if options.priority:
        # a successor is queued by the finish script, due when its last input is done, with no head start
        raise ValueError(
            f"step {step.index} {step.spec.name}(): priority is not honoured in a workflow (its steps are queued "
            f"as the steps before them end, due then); use {step.spec.name}.options(priority=0).s(...)"
        )


def _hmget(client: JobClient, workflow_id: str, fields: list[str]) -> Awaitable[list[bytes | None]]:
    """Fields of the workflow's state (redis-py types its hash reads for sync and async clients alike)."""
    return cast("Awaitable[list[bytes | None]]", client.redis.hmget(state_key(workflow_id), fields))


class WorkflowHandle(Generic[R]):
    """A reference to one enqueued workflow, typed by its result."""

    __slots__ = ("_final_is_list", "_final_specs", "client", "queue_name", "workflow_id")

    def __init__(
        self, client: JobClient, workflow_id: str, queue_name: str, final_specs: list[JobSpec[Any, Any]],
        final_is_list: bool,
    ) -> None:  # fmt: skip
        self.client = client
        self.workflow_id = workflow_id
        self.queue_name = queue_name
        self._final_specs = final_specs
        self._final_is_list = final_is_list

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.workflow_id}>"

    async def result(self, timeout_s: float | None = None) -> R:
        """Wait for the workflow's result: its last step's, or the list of a final group's. Raises
        :class:`WorkflowFailed` (naming the step) if a step failed for good, :class:`ResultNotReady` on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # woken by the finish script's announcement of the workflow's end, re-read at least every RECHECK_S
        waiters = await self.client._result_waiters(self.queue_name)
        delay_s = 0.001
        while True:
            expected = None if waiters is None else waiters.expect(self.workflow_id)
            try:
                status, error, final = await _hmget(self.client, self.workflow_id, ["status", "error", "final"])
                if status is None:
                    raise JobNotFound(f"workflow {self.workflow_id} not found (never enqueued, or its state expired)")
                if status == b"complete":
                    return await self._final_result((final or b"").decode())
                if status == b"failed":
                    raise WorkflowFailed(self.workflow_id, (error or b"").decode(errors="backslashreplace"))
                remaining_s = None if deadline is None else deadline - time.monotonic()
                if remaining_s is not None and remaining_s <= 0:
                    raise ResultNotReady(f"workflow {self.workflow_id} has no result after {timeout_s}s")
                delay_s = await wait_turn(waiters, expected, remaining_s, delay_s, _POLL_MAX_S)
            finally:
                if waiters is not None and expected is not None:
                    waiters.forget(self.workflow_id, expected)

    async def _final_result(self, final: str) -> R:
        indices = [int(i) for i in final.split(",")]
        raw = await _hmget(self.client, self.workflow_id, [f"r:{i}" for i in indices])
        if any(value is None for value in raw):
            raise JobNotFound(f"workflow {self.workflow_id}: a final step's result is gone (its state expired?)")
        values = [
            spec.decode_result(self._step_result(i, value or b""))
            for i, spec, value in zip(indices, self._final_specs, raw, strict=True)
        ]
        return cast(R, values if self._final_is_list else values[0])

    def _step_result(self, index: int, raw: bytes) -> Any:
        """Step ``index``'s recorded result (verified for that step when the client's codec has a secret)."""
        return decode_result(self.client.codec, raw, step_id(self.workflow_id, index), self.queue_name)

    async def status(self) -> str:
        """running, complete or failed."""
        [status] = await _hmget(self.client, self.workflow_id, ["status"])
        if status is None:
            raise JobNotFound(f"workflow {self.workflow_id} not found (never enqueued, or its state expired)")
        return str(status.decode())

    async def info(self) -> WorkflowInfo:
        """The workflow's status and error, and each step's function, status, job id, inputs and result."""
        return await read_workflow(self.client.redis, self.client.codec, self.workflow_id, self.queue_name)
