"""Bulk dead-letter actions (requeue or delete every dead job matching a filter) run in the background a page at a
time (``DeadLetters.requeue_all``/``purge_all``); their progress is kept here for the page that shows it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from ..dlq import DeadLetters

Action = Literal["requeue", "delete"]
#: finished operations are forgotten after this long
KEEP_S = 3600.0


@dataclass
class BulkOp:
    op_id: str
    action: Action
    queue: str
    function: str | None
    examined: int = 0
    acted: int = 0
    total: int = 0
    done: bool = False
    error: str | None = None
    started_s: float = field(default_factory=time.time)
    finished_s: float | None = None

    def progress(self, examined: int, acted: int, total: int) -> None:
        self.examined, self.acted, self.total = examined, acted, total

    @property
    def percent(self) -> int:
        return 100 if self.done else int(100 * self.examined / self.total) if self.total else 0


class BulkOps:
    def __init__(self) -> None:
        self.ops: dict[str, BulkOp] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, dlq: DeadLetters, action: Action, function: str | None) -> BulkOp:
        self._forget_old()
        op = BulkOp(secrets.token_hex(8), action, dlq.queue_name, function)
        every: Callable[..., Awaitable[int]] = dlq.requeue_all if action == "requeue" else dlq.purge_all
        self.ops[op.op_id] = op

        async def run() -> None:
            try:
                op.acted = await every(function, op.progress)
            except Exception as e:  # shown on the operation's page
                op.error = f"{type(e).__name__}: {e}"
            finally:
                op.done, op.finished_s = True, time.time()

        task = asyncio.create_task(run(), name=f"hasten-dashboard-{action}-{op.op_id}")
        self._tasks.add(task)  # a strong reference until it ends
        task.add_done_callback(self._tasks.discard)
        return op

    def _forget_old(self) -> None:
        now = time.time()
        for op_id, op in list(self.ops.items()):
            if op.finished_s is not None and now - op.finished_s > KEEP_S:
                del self.ops[op_id]

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
