"""The connection to a Redis Cluster: redis-py's asyncio ``RedisCluster``, shaped like arq's pool.

Every step of a queue's work is a script or a command on keys of the queue's one slot (``keyspace.py``), so the
cluster client sends it to the master that owns the slot and follows ``MOVED``/``ASK`` redirections (a slot
migration, a failover) by itself. What differs from one node:

- **No resend.** A command whose connection broke may or may not have run; like the single-node pool, this one
  never sends it again by itself (redis-py's cluster client would, up to three times): the error reaches the
  caller, whose outage handling (``outage.py``) retries what is safe to retry. The client drops its view of the
  cluster on such an error and reads it again on the next command, so that command goes to the new master.
- **No MULTI.** The cluster client has no transactions; ours are scripts of one slot (``scripts/*.lua``).
  ``pipeline(transaction=True)`` — what arq's ``Job.status()``, ``Job.result()``, ``Job.abort()`` and
  ``enqueue_job`` use — is refused with a message saying what to use instead. A pipeline is sent per node, not
  atomically (:class:`ClusterScriptPipeline`); scripts in it are loaded where they are missing.
- **Dedicated connections** (the worker's blocking pop, the result announcements' subscription) go to one node
  through :func:`node_client`: the master of a key's slot, asked again after every error.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Generator
from typing import Any, cast

from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name as arq_default_queue_name
from arq.constants import expires_extra_ms as arq_expires_extra_ms
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ClusterError, NoScriptError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import constants as k
from .scripts import source_by_sha
from .sockets import keepalive_options

__all__ = [
    "ClusterPool",
    "ClusterScriptPipeline",
    "create_cluster_pool",
    "describe_cluster",
    "follow_slot",
    "is_cluster_client",
    "node_client",
]

#: what a transaction on a cluster is refused with
NO_TRANSACTIONS = (
    "Redis Cluster: the cluster client has no MULTI transactions (arq's Job.status/result/abort and enqueue_job use "
    "them): use JobClient and JobHandle, whose steps are scripts of one slot"
)


class ClusterScriptPipeline(ClusterPipeline):
    """A cluster pipeline (commands grouped per node, not atomic) that sends nothing twice, and loads a script a
    node does not know: its ``EVALSHA`` was refused without running (``NOSCRIPT``), so only those are sent again."""

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> ClusterScriptPipeline:  # type: ignore[override]
        """Queue a script (redis-py blocks it in cluster pipelines, for scripts whose keys span slots; ours never
        do, and the node refuses one that would)."""
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)  # type: ignore[return-value]

    def __await__(self) -> Generator[Any, None, ClusterScriptPipeline]:
        # a script awaits what evalsha returns: redis-py's cluster pipeline would empty itself when awaited
        return self._itself().__await__()

    async def _itself(self) -> ClusterScriptPipeline:
        return self

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        stack = self._command_stack
        if not stack:
            return []
        client: RedisCluster = self._client
        try:
            if client._initialize:
                await client.initialize()
            await self._execute(client, stack, raise_on_error=False, allow_redirections=allow_redirections)
            await self._load_missing_scripts(client, stack)
        except BaseException as e:
            if type(e) in self.ERRORS_ALLOW_RETRY:
                await client.aclose()  # the next command reads the cluster's layout again
            raise
        finally:
            self._command_stack = []
        errors = [cmd.result for cmd in stack if isinstance(cmd.result, Exception)]
        if raise_on_error and errors:
            raise errors[0]
        return [cmd.result for cmd in stack]

    @staticmethod
    async def _load_missing_scripts(client: RedisCluster, stack: list[Any]) -> None:
        missing = [cmd for cmd in stack if isinstance(cmd.result, NoScriptError)]
        for sha in {cmd.args[1] for cmd in missing}:
            body = source_by_sha(sha if isinstance(sha, str) else bytes(sha).decode())
            if body is not None:
                await client.script_load(body)  # to every master
        for cmd in missing:
            try:
                cmd.result = await client.execute_command(*cmd.args, **cmd.kwargs)
            except Exception as e:  # kept as the command's result, as the pipeline keeps its errors
                cmd.result = e


class ClusterPool(RedisCluster):
    """``RedisCluster`` with the attributes and read helpers of arq's ``ArqRedis`` that work on a cluster."""

    job_serializer: Any = None
    job_deserializer: Any = None
    default_queue_name: str = arq_default_queue_name
    expires_extra_ms: int = arq_expires_extra_ms

    # plain GETs (and a ZSCORE) of one job's keys: arq's code works as it is
    _get_job_result = ArqRedis._get_job_result
    _get_job_def = ArqRedis._get_job_def

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """A command, sent again while the cluster refuses it without running it: ``TRYAGAIN`` (a multi-key command
        or script whose keys are split between two masters while their slot moves), or redis-py's "TTL exhausted"
        (every one of its attempts was redirected or refused). Nothing else is sent twice."""
        deadline = time.monotonic() + k.CLUSTER_REFUSED_RETRY_S
        pause_s = 0.01
        while True:
            try:
                return await super().execute_command(*args, **kwargs)
            except (TryAgainError, ClusterError) as e:
                if not _not_run(e):
                    raise
                if time.monotonic() + pause_s > deadline:  # as TRYAGAIN: the caller's outage handling retries it
                    raise TryAgainError(f"refused for {k.CLUSTER_REFUSED_RETRY_S:g}s: {e}") from e  # type: ignore[no-untyped-call]
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, 0.2)

    async def script_load(self, script: Any) -> str:
        """Load a script on every node this client knows, whatever role it thinks each has, skipping those that do
        not answer; returns its SHA1. redis-py loads on the nodes it takes for masters only, and after a slot move
        its incremental map can take a master for a replica: that master would then refuse the script for ever."""
        body = script.encode() if isinstance(script, str) else bytes(script)
        loaded, last_error = 0, None
        for node in self.get_nodes():
            try:
                await node.execute_command("SCRIPT", "LOAD", body)
                loaded += 1
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:  # a node down has no scripts to run
                last_error = e
        if not loaded and last_error is not None:
            raise last_error
        return hashlib.sha1(body).hexdigest()

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if transaction:
            raise RedisClusterException(NO_TRANSACTIONS)
        return ClusterScriptPipeline(self)  # type: ignore[abstract]  # redis-py's own class is instantiated alike

    async def enqueue_job(self, *args: Any, **kwargs: Any) -> Any:
        """arq's enqueue: a WATCH/MULTI transaction over the queue and an untagged job id's keys, so refused."""
        raise RedisClusterException(NO_TRANSACTIONS)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the connections (``close_connection_pool``, arq's pool's argument, is taken and means the same)."""
        await super().aclose()

    async def close(self, close_connection_pool: bool | None = None) -> None:
        """:meth:`aclose` under arq's name for it."""
        await super().aclose()


def _not_run(error: Exception) -> bool:
    """Whether the cluster refused the command before running it (so it may be sent again)."""
    return isinstance(error, TryAgainError) or str(error) == "TTL exhausted."


def cluster_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """``RedisCluster``'s arguments for arq's connection settings: credentials, TLS and bounded sockets."""
    kwargs: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "username": settings.username, "password": settings.password,
        "socket_connect_timeout": settings.conn_timeout, "socket_timeout": k.DEFAULT_SOCKET_TIMEOUT_S,
        "socket_keepalive": True, "socket_keepalive_options": keepalive_options(),
        # no resend: errors reach the caller's outage handling (see the module's docstring)
        "cluster_error_retry_attempts": 0, "connection_error_retry_attempts": 0,
        # a MOVED (a slot moved) patches the client's slot map; redis-py would also, every fifth MOVED, close every
        # connection at once, failing the commands other tasks are sending on them (jobs' own commands among them)
        "reinitialize_steps": 0,
    }  # fmt: skip
    if settings.ssl:
        kwargs |= {
            "ssl": True, "ssl_cert_reqs": settings.ssl_cert_reqs, "ssl_ca_certs": settings.ssl_ca_certs,
            "ssl_check_hostname": settings.ssl_check_hostname, "ssl_certfile": settings.ssl_certfile,
            "ssl_keyfile": settings.ssl_keyfile,
        }  # fmt: skip
    return kwargs


async def create_cluster_pool(
    settings: RedisSettings,
    *,
    job_serializer: Any = None,
    job_deserializer: Any = None,
    default_queue_name: str = arq_default_queue_name,
    expires_extra_ms: int = arq_expires_extra_ms,
) -> ArqRedis:
    """A connected :class:`ClusterPool`, typed as arq's pool: the code above it uses the commands both have."""
    pool = ClusterPool(**cluster_kwargs(settings))
    pool.job_serializer = job_serializer
    pool.job_deserializer = job_deserializer
    pool.default_queue_name = default_queue_name
    pool.expires_extra_ms = expires_extra_ms
    try:
        await pool.initialize()
    except BaseException:
        await pool.aclose()
        raise
    return cast(ArqRedis, pool)


def is_cluster_client(redis: object) -> bool:
    """Whether ``redis`` is a cluster client (a :class:`ClusterPool` or redis-py's ``RedisCluster``)."""
    return isinstance(redis, RedisCluster)


def describe_cluster(cluster: object, queue_name: str) -> str:
    """``3 masters; queue '{orders}' on 127.0.0.1:7001``: what a worker logs at start."""
    assert isinstance(cluster, RedisCluster)
    node = cluster.get_node_from_key(queue_name)
    where = "no master (the cluster is down?)" if node is None else node.name
    return f"{len(cluster.get_primaries())} masters; queue {queue_name!r} on {where}"


async def follow_slot(cluster: object, key: str) -> None:
    """Bring the client's map of ``key``'s slot up to date: one read of the key through the cluster client, which
    follows ``MOVED`` and patches its map (or, after a connection error, reads the whole layout on the next command).
    Not ``nodes_manager.initialize()``: that replaces every node object and closes the connections other tasks are
    sending on (their commands fail half-way: a job's own command, an enqueue). Raises while the cluster does not
    answer."""
    assert isinstance(cluster, RedisCluster)
    await cluster.execute_command("EXISTS", key)


def node_client(cluster: object, key: str) -> Redis:
    """A plain client of the master that owns ``key``'s slot now, with the cluster's credentials, TLS and socket
    options, for a connection that must stay on one node (a blocking pop, a subscription). Ask again after an
    error: the slot may have moved (its master failed over, or it was migrated)."""
    assert isinstance(cluster, RedisCluster)
    node = cluster.get_node_from_key(key)
    if node is None:
        raise RedisClusterException(f"no master serves the slot of {key!r} (is the cluster up?)")
    pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
    return Redis(connection_pool=pool)
