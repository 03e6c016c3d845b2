"""Waiting for results without polling: one subscription per client to the channels its queues' workers announce
ended jobs on, shared by all the client's waiters.

The finish script publishes the ids of the jobs that ended (a result, a dead letter, an abort) on
``jobs:done:<queue>``, one message per batch it writes; the abort script, a queued job it aborts.
:class:`ResultWaiters` holds one pub/sub connection per client, subscribed to the queues someone waited on, and
wakes the waiters of the ids it reads. The stored result stays the source of truth: a waiter subscribes, says which
id it expects, reads it, and only then waits — for its id, or at most :data:`RECHECK_S`, so a message that never
comes (a reconnect, a job ended by something that does not announce it: a stock arq worker) costs a late result, not
a lost one. A waiting request costs one read every :data:`RECHECK_S` until its job ends, where polling cost about
twenty a second.

On a Redis Cluster, redis-py's asyncio cluster client (redis<6) has no pub/sub; a plain ``PUBLISH`` — also one from
a script — reaches the subscribers of every node of the cluster, so the subscription is a connection of its own to
one node (the master of the first queue's slot, :func:`~src.runner.cluster_pool.node_client`). When that node
fails, the listener subscribes again on a node the cluster names then; meanwhile waiters read their results every
:data:`RECHECK_S`, as after any missed announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from . import constants as k
from .cluster_pool import follow_slot, is_cluster_client, node_client

logger = logging.getLogger("hasten.client")

#: the longest a waiter goes without reading its result again: what a missed announcement costs at most, and
#: what a waiter costs Redis meanwhile (one read)
RECHECK_S = 5.0
#: how long the listener waits after its connection failed before it listens again
_RETRY_S = 0.5


class ResultWaiters:
    """Waiters of one client, keyed by job id, woken by the announcements of the queues they wait on."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._cluster = is_cluster_client(redis)
        #: on a cluster, the node client the subscription uses
        self._node: Redis | None = None
        self._pubsub: PubSub | None = None
        self._channels: set[str] = set()
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribing = asyncio.Lock()

    async def watch(self, queue: str) -> None:
        """Subscribe to ``queue``'s announcements (once per client); the caller reads the result after this, so an
        announcement between its read and its wait is not missed."""
        channel = k.DONE_CHANNEL_PREFIX + queue
        if channel in self._channels and self._listener is not None and not self._listener.done():
            return
        async with self._subscribing:
            if self._pubsub is None:
                self._pubsub = self._new_pubsub(channel)
            if channel not in self._channels:
                await self._pubsub.subscribe(channel)
                self._channels.add(channel)
            if self._listener is None or self._listener.done():
                self._listener = asyncio.create_task(self._listen(self._pubsub), name="hasten-result-waiters")

    def expect(self, job_id: str) -> asyncio.Future[None]:
        """A future done when ``job_id`` is announced. Made *before* the caller reads the result: an announcement
        read by the listener between that read's reply and the caller's wait would otherwise wake nobody."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, set()).add(future)
        return future

    def forget(self, job_id: str, future: asyncio.Future[None]) -> None:
        waiters = self._waiting.get(job_id)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiting[job_id]

    @staticmethod
    async def wait(future: asyncio.Future[None], timeout_s: float) -> None:
        """Until ``future``'s announcement, or ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, timeout_s)

    async def _listen(self, pubsub: PubSub) -> None:
        current: PubSub | None = pubsub
        while True:
            try:
                if current is None:
                    current = await self._resubscribe()
                message = await current.get_message(timeout=None)
            except (RedisError, OSError) as e:  # the connection broke: redis-py subscribes again on the next read
                logger.debug("result announcements: %s: %s", type(e).__name__, e)
                await asyncio.sleep(_RETRY_S)
                if self._cluster:  # the node may be gone for good: subscribe on one the cluster names now
                    current = None
                continue
            if message is None or message.get("type") != "message":
                continue
            data = message["data"]
            for raw_id in (data if isinstance(data, bytes) else str(data).encode()).split(b"\0"):
                for future in self._waiting.get(raw_id.decode(errors="replace"), ()):
                    if not future.done():
                        future.set_result(None)

    def _new_pubsub(self, channel: str) -> PubSub:
        if not self._cluster:
            return self._redis.pubsub(ignore_subscribe_messages=True)
        self._node = node_client(self._redis, channel)
        return self._node.pubsub(ignore_subscribe_messages=True)

    async def _resubscribe(self) -> PubSub:
        """A new subscription to every channel, on a node of the cluster's current layout (raises while none
        answers; the listener tries again)."""
        async with self._subscribing:
            await self._close_pubsub()
            channels = sorted(self._channels)
            await follow_slot(self._redis, channels[0])
            self._pubsub = self._new_pubsub(channels[0])
            await self._pubsub.subscribe(*channels)
            return self._pubsub

    async def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py 5
            self._pubsub = None
        if self._node is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._node.aclose(close_connection_pool=True)
            self._node = None

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._close_pubsub()


async def wait_turn(
    waiters: ResultWaiters | None,
    expected: asyncio.Future[None] | None,
    remaining_s: float | None,
    delay_s: float,
    poll_max_s: float,
) -> float:
    """One wait of a loop that reads a result until it is there: until the result's announcement (re-read every
    :data:`RECHECK_S` at most) or, without a subscription, one poll delay; returns the next poll delay."""
    if waiters is not None and expected is not None:
        await waiters.wait(expected, RECHECK_S if remaining_s is None else min(RECHECK_S, remaining_s))
        return delay_s
    await asyncio.sleep(delay_s if remaining_s is None else min(delay_s, remaining_s))
    return min(delay_s * 2, poll_max_s)
