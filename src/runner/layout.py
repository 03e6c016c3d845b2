"""What a worker checks of its Redis before it touches a key: a server its scripts run on, a key layout it knows,
and on a Redis Cluster a queue whose keys can share one slot (``keyspace.py``).

The layout's version is kept in Redis (:data:`~src.runner.constants.LAYOUT_KEY`); the first worker writes it.
A layout changed by a later version is refused with one line saying what to do, before any key is written in a
layout this worker would misread.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from . import constants as k
from .errors import KeyLayoutError
from .keyspace import hash_tag

__all__ = ["MIN_REDIS_VERSION", "check_layout", "is_cluster", "untagged_on_cluster"]

#: the scripts declare their flags (``#!lua``), which Redis reads from 7.0 on
MIN_REDIS_VERSION = (7, 0)


async def check_layout(redis: Redis, queue_name: str) -> bool:
    """Refuse (:class:`KeyLayoutError`) what this worker cannot run on; write the layout marker when there is none.
    Returns whether Redis is a cluster."""
    info: dict[str, Any] = await redis.info()
    version = str(info.get("redis_version", "0"))
    if _release(version) < MIN_REDIS_VERSION:
        raise KeyLayoutError(
            f"Redis {version} is too old: hasten needs Redis >= {'.'.join(map(str, MIN_REDIS_VERSION))}"
        )
    cluster = bool(info.get("cluster_enabled"))
    if cluster and not hash_tag(queue_name):
        raise KeyLayoutError(untagged_on_cluster(queue_name))
    # the marker as found, written in the same command when absent
    found: bytes | None = await redis.set(k.LAYOUT_KEY, k.KEY_LAYOUT_VERSION, nx=True, get=True)
    if found is not None and found != str(k.KEY_LAYOUT_VERSION).encode():
        raise KeyLayoutError(
            f"Redis holds key layout {found.decode(errors='replace')!r} ({k.LAYOUT_KEY}), this worker knows layout "
            f"{k.KEY_LAYOUT_VERSION} only: run the hasten version that wrote it, or a newer one"
        )
    return cluster


def untagged_on_cluster(queue_name: str) -> str:
    """What an untagged queue on a cluster is refused with."""
    return (
        f"queue {queue_name!r} has no hash tag and Redis is a cluster, where a queue's keys must share one slot: "
        f"name it with a tag, e.g. '{{{queue_name}}}'"
    )


async def is_cluster(redis: Redis) -> bool:
    """Whether ``redis`` is a node of a Redis Cluster."""
    info: dict[str, Any] = await redis.info("cluster")
    return bool(info.get("cluster_enabled"))


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)
