"""Liveness kept apart from readiness, so that a Redis blip does not make an orchestrator restart every worker.

- ``/livez`` (liveness): the process's event loop answers. The endpoint runs in that loop, so an answer at all is
  the proof; a loop blocked by a job answers nothing, and only that is worth a restart.
- ``/readyz`` (readiness): Redis answers a PING and does not refuse the worker's commands, and the pickup loop has
  ticked within :data:`PICKUP_STALE_S` (or waits for a free slot: all slots busy is working, not stuck). A worker
  that is starting or draining is not ready. Not ready is 503 with the reason; an orchestrator stops routing to
  it (for a worker: marks it unready) but does not restart it.

A fleet's supervisor answers for the host (``metrics_fleet.py``): alive while it runs; ready when Redis answers
and at least one worker of this host has written its heartbeat (``worker_registry.py``) within two heartbeats.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from .http_endpoint import Response
from .outage import REDIS_DOWN, RedisHealth
from .worker_registry import HEARTBEAT_S, live_workers

if TYPE_CHECKING:
    from .pickup import Pickup

#: the pickup loop ticks at least every few seconds (an idle wait is bounded by wakeup.MAX_POP_S, a Redis call by
#: the socket timeout); not having ticked for this long means it is stuck
PICKUP_STALE_S = 10.0
#: a probe's PING waits at most this long (probes themselves time out after 1 s by default in Kubernetes)
PING_TIMEOUT_S = 0.8


async def alive() -> Response:
    return Response(200, b"alive\n")


async def ping(redis: Redis) -> str:
    """'' when Redis answers a PING in time, else why not."""
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await redis.ping()
    except (*REDIS_DOWN, TimeoutError) as e:
        return f"Redis unreachable ({type(e).__name__}: {e})".replace(" ()", "")
    return ""


class WorkerReadiness:
    """Readiness of one worker process (see the module's docstring)."""

    def __init__(self, redis: Redis, health: RedisHealth, pickup: Callable[[], Pickup | None]) -> None:
        self._redis = redis
        self._health = health
        self._pickup = pickup

    async def reason(self) -> str:
        """'' when ready, else why not."""
        pickup = self._pickup()
        if pickup is None:
            return "starting: not taking jobs yet"
        if not pickup.taking:
            return "draining: shutting down"
        if self._health.refusing:
            return f"Redis refuses the worker's commands ({', '.join(sorted(self._health.refusing))}); see its log"
        if unreachable := await ping(self._redis):
            return unreachable
        idle_s = time.monotonic() - pickup.ticked_at
        if not pickup.waiting_for_slot and idle_s > PICKUP_STALE_S:
            return f"the pickup loop has not ticked for {idle_s:.0f} s"
        return ""

    async def __call__(self) -> Response:
        return _readiness(await self.reason())


class HostReadiness:
    """Readiness of a host's fleet, for its supervisor's endpoint."""

    def __init__(self, redis: Callable[[], Awaitable[Redis | None]], queue: str, host: str | None = None) -> None:
        self._redis = redis
        self._queue = queue
        self._host = host or socket.gethostname()

    async def reason(self) -> str:
        redis = await self._redis()
        if redis is None:
            return "Redis unreachable (no connection)"
        if unreachable := await ping(redis):
            return unreachable
        try:
            async with asyncio.timeout(PING_TIMEOUT_S * 2):
                workers = await live_workers(redis, self._queue)
        except (*REDIS_DOWN, TimeoutError) as e:
            return f"worker registry unreadable ({type(e).__name__})"
        fresh_ms = (time.time() - 2 * HEARTBEAT_S) * 1000
        if not any(w.host == self._host and w.heartbeat_ms >= fresh_ms for w in workers):
            return f"no worker of queue {self._queue!r} on {self._host} has written a heartbeat recently"
        return ""

    async def __call__(self) -> Response:
        return _readiness(await self.reason())


def _readiness(reason: str) -> Response:
    return Response(503, f"not ready: {reason}\n".encode()) if reason else Response(200, b"ready\n")
