"""Opening a connection pool for arq's connection settings: one Redis node (arq's ``create_pool``), the master
of a Redis Sentinel deployment, or a Redis Cluster (``cluster_pool.py``).

With sentinels, every connection asks them where the master is when it connects, so after a failover the next
connection goes to the new master: a command on a connection to the old one fails (refused, reset, or refused
as ``READONLY`` once it is a replica — redis-py turns that into a connection error), the worker's duties treat it
as an outage (``outage.py``), retry with backoff, and reconnect. Only the master is ever used: a claim, an
outcome or an enqueue never reads from a replica. The first time a pool finds the master moved, it logs the switch
once (WARNING). arq's own sentinel support cannot authenticate to the sentinels, hence this module.
"""

from __future__ import annotations

import logging
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from arq.connections import create_pool as arq_create_pool
from arq.constants import default_queue_name, expires_extra_ms
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from .cluster_pool import create_cluster_pool

logger = logging.getLogger("hasten.redis")


class _MasterWatch(SentinelConnectionPool):
    """A sentinel-managed pool that logs when the master it connects to changes."""

    _known: tuple[str, int] | None = None

    async def get_master_address(self) -> tuple[str, int]:
        address: tuple[str, int] = await super().get_master_address()  # type: ignore[no-untyped-call]
        if self._known is not None and address != self._known:
            logger.warning(
                "Redis master %r moved from %s:%d to %s:%d (a sentinel failover); connections follow it",
                self.service_name, *self._known, *address,
            )  # fmt: skip
        self._known = address
        return address

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the connections, and the ones to the sentinels (they reopen when next asked)."""
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.connection_pool.disconnect()


def sentinel_password(settings: RedisSettings) -> str | None:
    """The sentinels' own password (``JOBS_REDIS_SENTINEL_PASSWORD``), if the settings carry one."""
    password = getattr(settings, "sentinel_password", None)
    return password if isinstance(password, str) else None


def sentinel_for(settings: RedisSettings, timeout_s: float | None = None) -> Sentinel:
    """A client of the sentinels in ``settings.host`` whose masters use the data connection's settings."""
    tls: dict[str, Any] = {}
    if settings.ssl:
        tls = {
            "ssl": True, "ssl_cert_reqs": settings.ssl_cert_reqs, "ssl_ca_certs": settings.ssl_ca_certs,
            "ssl_check_hostname": settings.ssl_check_hostname, "ssl_certfile": settings.ssl_certfile,
            "ssl_keyfile": settings.ssl_keyfile,
        }  # fmt: skip
    timeouts = {"socket_connect_timeout": timeout_s or settings.conn_timeout, "socket_timeout": timeout_s}
    return Sentinel(  # type: ignore[no-untyped-call]
        list(settings.host),  # a list of (host, port) in sentinel mode
        sentinel_kwargs={"password": sentinel_password(settings), **timeouts, **tls},
        db=settings.database, username=settings.username, password=settings.password, **timeouts, **tls,
    )  # fmt: skip


async def create_pool(
    settings: RedisSettings | None,
    *,
    job_serializer: Any = None,
    job_deserializer: Any = None,
    default_queue_name: str = default_queue_name,
    expires_extra_ms: int = expires_extra_ms,
) -> ArqRedis:
    """arq's ``create_pool`` for one node (arq's defaults when ``settings`` is None); for sentinels, a pool on
    the master they name, which follows it; for a cluster, a cluster client."""
    if settings is not None and getattr(settings, "cluster", False):
        return await create_cluster_pool(
            settings, job_serializer=job_serializer, job_deserializer=job_deserializer,
            default_queue_name=default_queue_name, expires_extra_ms=expires_extra_ms,
        )  # fmt: skip
    if settings is None or not settings.sentinel:
        return await arq_create_pool(
            settings, job_serializer=job_serializer, job_deserializer=job_deserializer,
            default_queue_name=default_queue_name, expires_extra_ms=expires_extra_ms,
        )  # fmt: skip
    redis = sentinel_for(settings).master_for(
        settings.sentinel_master, redis_class=ArqRedis, connection_pool_class=_MasterWatch
    )
    assert isinstance(redis, ArqRedis)
    # master_for builds the client from its pool, which takes no arq options: set them as arq's __init__ does
    redis.job_serializer = job_serializer
    redis.job_deserializer = job_deserializer
    redis.default_queue_name = default_queue_name
    redis.expires_extra_ms = expires_extra_ms
    await redis.ping()
    return redis
