"""Names of a workflow and of its steps, shared by the client (which makes them) and the worker (which reads them).

A workflow's id is ``<queue's hash tag>wf:<32 hex digits>`` and its step *i*'s job id is ``<workflow id>:<i>``: the
finish script finds a step's workflow from the job id alone (``scripts/finish.lua``), and every key of a workflow —
its state, its steps' job keys — hashes with its queue (``docs/keyspace.md``).
"""

from __future__ import annotations

import re
from uuid import uuid4

from . import constants as k
from .keyspace import tagged_id

__all__ = ["WORKFLOW_INPUT_KEY", "new_workflow_id", "state_key", "step_id", "step_of"]

#: the key, in a step's job dict, of where its input comes from (stock arq ignores it)
WORKFLOW_INPUT_KEY = "wf"

_STEP = re.compile(r"^((?:\{[^}]+\})?wf:[0-9a-f]{32}):(\d+)$")


def new_workflow_id(queue_name: str) -> str:
    """A fresh workflow id for ``queue_name`` (with its hash tag)."""
    return tagged_id(queue_name, f"wf:{uuid4().hex}")


def step_id(workflow_id: str, index: int) -> str:
    """The job id of step ``index`` of ``workflow_id``."""
    return f"{workflow_id}:{index}"


def step_of(job_id: str) -> tuple[str, int] | None:
    """``(workflow id, step index)`` of a workflow step's job id; None for any other job."""
    if "wf:" not in job_id:  # every job's final outcome asks: most are no step
        return None
    match = _STEP.match(job_id)
    return None if match is None else (match[1], int(match[2]))


def state_key(workflow_id: str) -> str:
    """The hash holding ``workflow_id``'s state."""
    return k.WORKFLOW_KEY_PREFIX + workflow_id
