"""Bounded Redis connections: no call waits for ever on a socket whose peer vanished.

A failover or a dead NAT entry leaves *half-open* connections: the peer is gone without a FIN or RST, so a
read on them blocks for ever, and a worker whose existing connections go silent never runs another job. Every
connection of a worker's pool therefore gets a socket timeout (each command's reply is bounded) and TCP
keepalive (an idle connection to a vanished peer is found and closed by the kernel); the blocking pop, which
may legitimately wait longer than the socket timeout, is bounded by its own timer (``wakeup.py``). When one
command times out, every connection the pool has made so far is suspect — they all went through the same path
— so each is replaced at its next checkout (:func:`retire_connections`) instead of each timing out in turn.
"""

from __future__ import annotations

import socket
from typing import Any

from redis.asyncio import Redis

from . import constants as k


def keepalive_options() -> dict[int, int]:
    """Probe an idle connection after 10 s, every 5 s, give up after 3 misses (Linux names; elsewhere the
    system's defaults apply)."""
    names = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    return {getattr(socket, name): value for name, value in names.items() if hasattr(socket, name)}


def bound(redis: Redis, socket_timeout_s: float = k.DEFAULT_SOCKET_TIMEOUT_S) -> None:
    """Give ``redis``'s pool, its connections now and later, a socket timeout and keepalive. Idempotent.
    A cluster client has them from its start (``cluster_pool.py``)."""
    pool = getattr(redis, "connection_pool", None)
    if pool is None:
        return
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(),
    }
    if "path" in pool.connection_kwargs:  # unix sockets have no TCP keepalive
        options = {"socket_timeout": socket_timeout_s}
    pool.connection_kwargs.update(options)
    for connection in (*pool._available_connections, *pool._in_use_connections):
        for name, value in options.items():
            setattr(connection, name, value)


def retire_connections(redis: Redis) -> None:
    """Replace every connection the pool has made so far at its next checkout (see ``lean_pool.py``). A cluster
    client closes a node's connections itself when one fails, and reads the cluster's layout again."""
    pool = getattr(redis, "connection_pool", None)
    if pool is None:
        return
    pool.generation = getattr(pool, "generation", 0) + 1
