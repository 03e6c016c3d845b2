"""Bulk dead-letter actions (requeue or delete every dead job matching a filter) run in the background a page at a
time (``DeadLetters.requeue_all``/``purge_all``). Their progress is written to Redis after each page (a hash per
operation, ``constants.BULK_OP_KEY_PREFIX``), so whichever dashboard process a browser reaches — several behind a
load balancer, or ``--workers`` — shows it; the process that started one is only the one that runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from redis.asyncio import Redis

from .. import constants as k
from ..cluster_pool import is_cluster_client
from ..dlq import DeadLetters

log = logging.getLogger(__name__)

Action = Literal["requeue", "delete"]
#: an operation not done whose last report is older than this is shown as stalled: its process stopped or lost Redis
STALLED_MS = 30_000


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    started_ms: int = field(default_factory=_now_ms)
    #: when the process running it last reported
    updated_ms: int = field(default_factory=_now_ms)

    @property
    def percent(self) -> int:
        return 100 if self.done else int(100 * self.examined / self.total) if self.total else 0

    @property
    def stalled(self) -> bool:
        return not self.done and _now_ms() - self.updated_ms > STALLED_MS

    def fields(self) -> dict[str, str | int]:
        return {
            "action": self.action, "queue": self.queue, "function": self.function or "", "examined": self.examined,
            "acted": self.acted, "total": self.total, "done": int(self.done), "error": self.error or "",
            "started_ms": self.started_ms, "updated_ms": self.updated_ms,
        }  # fmt: skip

    @classmethod
    def from_fields(cls, op_id: str, raw: dict[bytes, bytes]) -> BulkOp:
        got = {key.decode(): value.decode(errors="replace") for key, value in raw.items()}
        action: Action = "requeue" if got.get("action") == "requeue" else "delete"
        number = {name: int(got[name]) if got.get(name, "").isdigit() else 0 for name in _NUMBERS}
        return cls(
            op_id, action, got.get("queue", "?"), got.get("function") or None, number["examined"], number["acted"],
            number["total"], got.get("done") == "1", got.get("error") or None, number["started_ms"],
            number["updated_ms"],
        )  # fmt: skip


_NUMBERS = ("examined", "acted", "total", "started_ms", "updated_ms")


class BulkOps:
    """Starts bulk operations in this process; :func:`read_op` reads any process's."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, dlq: DeadLetters, action: Action, function: str | None) -> BulkOp:
        """Write the operation's record (so the page it redirects to finds it at once), then run it in the
        background, writing its progress after each page."""
        op = BulkOp(secrets.token_hex(8), action, dlq.queue_name, function)
        every: Callable[..., Awaitable[int]] = dlq.requeue_all if action == "requeue" else dlq.purge_all
        await _save(dlq.redis, op)

        async def report(examined: int, acted: int, total: int) -> None:
            op.examined, op.acted, op.total, op.updated_ms = examined, acted, total, _now_ms()
            await _save(dlq.redis, op)

        async def run() -> None:
            try:
                op.acted = await every(function, report)
            except asyncio.CancelledError:
                op.error = "stopped: the dashboard process shut down"
                raise
            except Exception as e:  # shown on the operation's page
                op.error = f"{type(e).__name__}: {e}"
            finally:
                op.done, op.updated_ms = True, _now_ms()
                try:
                    await _save(dlq.redis, op)
                except Exception:  # the page shows it stalled: the truth as far as anyone can tell
                    log.warning("bulk %s %s: its outcome could not be written", action, op.op_id, exc_info=True)

        task = asyncio.create_task(run(), name=f"hasten-dashboard-{action}-{op.op_id}")
        self._tasks.add(task)  # a strong reference until it ends
        task.add_done_callback(self._tasks.discard)
        return op

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _save(redis: Redis, op: BulkOp) -> None:
    key = k.BULK_OP_KEY_PREFIX + op.op_id
    # one key: a MULTI, or on a cluster (which has none) one pipeline to the key's node
    async with redis.pipeline(transaction=not is_cluster_client(redis)) as tx:
        tx.hset(key, mapping=op.fields())
        tx.pexpire(key, k.BULK_OP_TTL_MS)
        await tx.execute()


async def read_op(redis: Redis, op_id: str) -> BulkOp | None:
    """The operation's record, written by whichever process runs it; None when there is none (or it expired)."""
    if not op_id.isalnum():  # ids are hex: nothing else names a key of ours
        return None
    # the client's stubs type hgetall as sync or async alike
    raw: dict[bytes, bytes] = await redis.hgetall(k.BULK_OP_KEY_PREFIX + op_id)  # type: ignore[misc]
    return BulkOp.from_fields(op_id, raw) if raw else None
