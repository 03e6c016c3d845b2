"""Faster command packing for redis-py's asyncio connections.

redis-py's asyncio ``Connection`` packs every command in Python (its sync client uses hiredis when present);
on the hot path that is the largest single cost of an enqueue. :func:`use_hiredis_packing` makes a pool's
new connections pack with ``hiredis.pack_command`` instead, for whatever connection class the pool uses
(TCP, TLS, unix socket). Without hiredis it changes nothing.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is a dependency (redis[hiredis])
    hiredis = None  # type: ignore[assignment]


class _HiredisPacking(AbstractConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        # redis-py sends some commands with their subcommand in the name ("CLIENT UNBLOCK")
        if isinstance(first, str) and " " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as e:
            raise DataError(str(e)) from None


def use_hiredis_packing(redis: Redis) -> None:
    """Pack commands of connections that ``redis``'s pool opens from now on with hiredis."""
    pool = redis.connection_pool
    base = pool.connection_class
    if hiredis is None or issubclass(base, _HiredisPacking):
        return
    pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
