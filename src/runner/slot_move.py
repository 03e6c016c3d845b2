"""Moving a queue's slot to another master of a Redis Cluster while its workers run: ``hasten cluster move``.

Redis 7 moves a slot key by key (``CLUSTER SETSLOT … IMPORTING/MIGRATING``, ``MIGRATE``, ``SETSLOT … NODE``). A
claim or an outcome reads keys it finds through the queue (a job's definition, its lease) that are not declared to
the cluster, so while the slot is split such a key may already be on the new master and read as missing. The move
therefore happens only while the queue is paused and none of its jobs runs:

1. pause the queue (``pausing.py``: every worker's next claim sees it) — unless it already was;
2. wait until no ``arq:in-progress`` key of the queue's tag is left (running jobs finish and write their outcome),
   up to ``wait_s``;
3. move the slot: ``IMPORTING`` on the target, ``MIGRATING`` on the source, the keys in ``MIGRATE`` batches, then
   ``SETSLOT … NODE`` on the target, the source and every other master (as ``redis-cli --cluster reshard`` does);
4. resume the queue (if this move paused it); the workers follow the slot (``MOVED``).

Enqueues go on meanwhile: Redis answers those of the moving slot with ``ASK`` (followed by the client) or
``TRYAGAIN`` (nothing ran; the cluster pool sends it again, ``cluster_pool.py``). Other queues' slots are not
touched. A failure before a key moved puts the slot back as it was and resumes the queue; a failure with the keys
split between the two masters leaves the queue paused (resuming it then is the unsafe case) and says so: running
the same move again finishes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from . import constants as k
from .errors import JobsError
from .keyspace import hash_tag
from .pausing import pause, resume

__all__ = ["MoveResult", "SlotMoveError", "move_queue"]

#: keys per ``MIGRATE`` (``redis-cli --cluster reshard`` moves 10 by default; bigger batches keep the split short)
MIGRATE_BATCH = 500
#: how long one ``MIGRATE`` batch may take on the target
MIGRATE_TIMEOUT_MS = 10_000
#: how often the wait for running jobs looks again
_WAIT_POLL_S = 0.2


class SlotMoveError(JobsError):
    """The move was refused or failed; the message says what state the slot and the queue are in."""


@dataclass(frozen=True)
class MoveResult:
    """What a move did: the slot, its old and new master (``host:port``), how many keys moved, and whether the
    queue was resumed (False when it was paused before the move, and so stays paused)."""

    slot: int
    source: str
    target: str
    keys_moved: int
    resumed: bool


#: called while waiting, with the number of running jobs and the seconds left
WaitReport = Callable[[int, float], None]


async def move_queue(redis: RedisCluster, queue: str, to: str, *, wait_s: float, report: WaitReport) -> MoveResult:
    """Move ``queue``'s slot to the master at ``to`` (``host:port``), pausing the queue meanwhile (see the module's
    docstring). Raises :class:`SlotMoveError` with the slot's and the queue's state on any failure."""
    tag = hash_tag(queue)
    if not tag:
        raise SlotMoveError(f"queue {queue!r} has no hash tag ({{name}}): its keys are not in one slot")
    await redis.nodes_manager.initialize()  # the cluster's layout now, not as the client last saw it
    slot = redis.keyslot(queue)
    source = redis.nodes_manager.get_node_from_slot(slot)
    target = _master(redis, to)
    if source.name == target.name:
        return MoveResult(slot, source.name, target.name, keys_moved=0, resumed=False)
    await _refuse_foreign_keys(source, slot, tag)
    paused_here = await pause(cast(Redis, redis), queue)
    try:
        await _wait_idle(source, tag, wait_s, report)
    except BaseException as e:
        state = await _resume_after_failure(redis, queue, paused_here)
        raise SlotMoveError(f"{_reason(e)}; slot {slot} stays on {source.name}; {state}") from e
    moved = 0
    try:
        await _node(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", await _node_id(source))
        await _node(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", await _node_id(target))
        async for batch in _migrate_batches(source, target, slot):
            moved += batch
        await _assign(redis, slot, source, target)
    except BaseException as e:
        if moved == 0 and await _keys_of_slot(target, slot) == 0:
            await _stable(source, target, slot)
            state = await _resume_after_failure(redis, queue, paused_here)
            raise SlotMoveError(f"{_reason(e)}; slot {slot} stays on {source.name}; {state}") from e
        raise SlotMoveError(
            f"{_reason(e)}; slot {slot} is split ({moved} keys moved from {source.name} to {target.name}): queue "
            f"{queue!r} stays paused; run the same move again to finish it, then `hasten resume {queue}`"
        ) from e
    if paused_here:
        await resume(cast(Redis, redis), queue)
    await redis.nodes_manager.initialize()
    return MoveResult(slot, source.name, target.name, keys_moved=moved, resumed=paused_here)


def _master(redis: RedisCluster, address: str) -> ClusterNode:
    masters = {node.name: node for node in redis.get_primaries()}
    if address not in masters:
        raise SlotMoveError(f"{address!r} is not a master of this cluster (masters: {', '.join(sorted(masters))})")
    return masters[address]


async def _node(node: ClusterNode, *args: Any) -> Any:
    return await node.execute_command(*args)


async def _node_id(node: ClusterNode) -> str:
    raw = await _node(node, "CLUSTER", "MYID")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def _keys_of_slot(node: ClusterNode, slot: int) -> int:
    return int(await _node(node, "CLUSTER", "COUNTKEYSINSLOT", slot))


async def _refuse_foreign_keys(source: ClusterNode, slot: int, tag: str) -> None:
    """Refuse to move a slot that holds keys of another hash tag: their queues (not paused) would move too."""
    count = await _keys_of_slot(source, slot)
    keys: list[bytes] = await _node(source, "CLUSTER", "GETKEYSINSLOT", slot, count) if count else []
    tags = {hash_tag(key.decode(errors="replace")) or key.decode(errors="replace") for key in keys}
    others = sorted(tags - {tag})
    if others:
        shown = ", ".join(repr(t) for t in others[:5]) + (" …" if len(others) > 5 else "")
        raise SlotMoveError(
            f"slot {slot} also holds keys of {shown}, which would move unpaused with {tag}: "
            "move them elsewhere first (or reshard with redis-cli with those queues paused)"
        )


async def _running(source: ClusterNode, tag: str) -> int:
    """How many jobs of ``tag``'s queues hold an in-progress key (running, or a dead worker's lease not expired)."""
    pattern = k.in_progress_key_prefix + _glob_escape(tag) + "*"
    cursor, found = 0, 0
    while True:
        cursor, keys = await _node(source, "SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        found += len(keys)
        if int(cursor) == 0:
            return found


async def _wait_idle(source: ClusterNode, tag: str, wait_s: float, report: WaitReport) -> None:
    deadline = time.monotonic() + wait_s
    while (running := await _running(source, tag)) > 0:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise SlotMoveError(f"{running} job(s) of {tag} still running after {wait_s:g}s")
        report(running, left_s)
        await asyncio.sleep(_WAIT_POLL_S)


async def _migrate_batches(source: ClusterNode, target: ClusterNode, slot: int) -> Any:
    """``MIGRATE`` the slot's keys from ``source`` to ``target``, a batch at a time; yields each batch's size."""
    auth = _auth_of(target)
    while keys := await _node(source, "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH):
        reply = await _node(source, "MIGRATE", target.host, target.port, "", 0, MIGRATE_TIMEOUT_MS, *auth, "KEYS",
                            *keys)  # fmt: skip
        if reply not in (b"OK", b"NOKEY", "OK", "NOKEY", True):
            raise SlotMoveError(f"MIGRATE answered {reply!r}")
        yield len(keys)


def _auth_of(node: ClusterNode) -> list[str]:
    """``MIGRATE``'s ``AUTH2`` for a cluster with a password (the nodes share the client's credentials)."""
    password = node.connection_kwargs.get("password")
    if not password:
        return []
    return ["AUTH2", node.connection_kwargs.get("username") or "default", password]


async def _assign(redis: RedisCluster, slot: int, source: ClusterNode, target: ClusterNode) -> None:
    """``SETSLOT … NODE`` on the new owner first, then the old one, then every other master (as redis-cli does)."""
    target_id = await _node_id(target)
    others = [n for n in redis.get_primaries() if n.name not in (source.name, target.name)]
    for node in [target, source, *others]:
        await _node(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)


async def _stable(source: ClusterNode, target: ClusterNode, slot: int) -> None:
    for node in (source, target):
        await _node(node, "CLUSTER", "SETSLOT", slot, "STABLE")


async def _resume_after_failure(redis: RedisCluster, queue: str, paused_here: bool) -> str:
    if not paused_here:
        return f"queue {queue!r} stays paused, as it was before"
    await resume(cast(Redis, redis), queue)
    return f"queue {queue!r} resumed"


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncio.CancelledError | KeyboardInterrupt):
        return "interrupted"
    return str(e) or type(e).__name__


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
