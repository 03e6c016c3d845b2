"""Redis Cluster on loopback for the tests: real ``redis-server --cluster-enabled yes`` processes.

:func:`start_single_node_cluster` is one node that serves every slot. It needs no cluster client, yet Redis
applies the cluster's rules on it: a command or a script whose keys hash to more than one slot is refused
(``CROSSSLOT``, "Script attempted to access keys that do not hash to the same slot"). A queue that runs there keeps
all its keys in one slot, which is what a cluster of many nodes needs.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from arq.constants import result_key_prefix
from redis.asyncio.cluster import RedisCluster

from src.runner import JobClient
from src.runner.codec import Codec
from src.runner.redis_server import RedisServer, free_port
from src.settings import Settings

#: how long a new cluster may take to report ``cluster_state:ok``
_READY_TIMEOUT_S = 15.0


def cluster_node(data_dir: Path, node_timeout_ms: int | None = None) -> RedisServer:
    """A cluster-enabled redis-server (not started), without persistence. Its bus port is a free one of its own:
    the default (port + 10000) does not exist for the high ports the system hands out. ``node_timeout_ms``: how long
    a master may be unreachable before its replica takes over (Redis's default: 15 s)."""
    options = {"cluster-enabled": "yes", "cluster-config-file": "nodes.conf", "cluster-port": str(free_port())}
    if node_timeout_ms is not None:
        options["cluster-node-timeout"] = str(node_timeout_ms)
    return RedisServer(data_dir, options={**options, "save": "''", "appendonly": "no"})


def cli(port: int, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def wait_cluster_ok(port: int) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while "cluster_state:ok" not in cli(port, "CLUSTER", "INFO"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster at port {port} is not ok after {_READY_TIMEOUT_S}s")
        time.sleep(0.05)


def start_single_node_cluster(data_dir: Path) -> RedisServer:
    """One cluster node serving all 16384 slots."""
    node = cluster_node(data_dir).start()
    cli(node.port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
    wait_cluster_ok(node.port)
    return node


def start_cluster(
    data_dir: Path, masters: int = 3, *, replicas: int = 0, node_timeout_ms: int | None = None
) -> list[RedisServer]:
    """``masters`` cluster nodes on loopback, joined by ``redis-cli --cluster create`` (slots split evenly), each
    with ``replicas`` replicas (``masters * (1 + replicas)`` nodes in all)."""
    count = masters * (1 + replicas)
    nodes = [cluster_node(data_dir / f"node{i}", node_timeout_ms) for i in range(count)]
    try:
        for node in nodes:
            node.start()
        addresses = (f"127.0.0.1:{n.port}" for n in nodes)
        cli(nodes[0].port, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes")
        for node in nodes:
            wait_cluster_ok(node.port)
        if replicas:
            wait_replicas_in_sync(nodes, masters * replicas)
    except BaseException:
        stop_cluster(nodes)
        raise
    return nodes


def wait_replicas_in_sync(nodes: list[RedisServer], expected: int) -> None:
    """Until ``expected`` nodes are replicas whose link to their master is up."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while sum("master_link_status:up" in cli(n.port, "INFO", "replication") for n in nodes) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {expected} replicas in sync after {_READY_TIMEOUT_S}s")
        time.sleep(0.05)


def masters_of(nodes: list[RedisServer]) -> list[RedisServer]:
    """The nodes that are masters now (asked of each node that answers)."""
    alive = [n for n in nodes if n.ping()]
    return [n for n in alive if "role:master" in cli(n.port, "INFO", "replication")]


def migrate_slot(nodes: list[RedisServer], slot: int, source: RedisServer, target: RedisServer) -> int:
    """Move ``slot`` with its keys from ``source`` to ``target`` as ``redis-cli --cluster reshard`` does, key batch
    by key batch (``IMPORTING``/``MIGRATING``, ``MIGRATE``, then ``SETSLOT … NODE`` everywhere); returns how many
    keys moved. While it runs, a command on keys of the slot is answered by the node that has them, or with ``ASK``
    or ``TRYAGAIN``."""
    source_id, target_id = cli(source.port, "CLUSTER", "MYID").strip(), cli(target.port, "CLUSTER", "MYID").strip()
    cli(target.port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
    cli(source.port, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
    moved = 0
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while keys := cli(source.port, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split():
        # redis-cli exits 0 on an error reply: read it, or a key that cannot move would loop here for ever
        reply = cli(source.port, "MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", *keys).strip()
        if reply not in ("OK", "NOKEY") or time.monotonic() > deadline:
            raise RuntimeError(f"MIGRATE of slot {slot}: {reply!r} ({moved} keys moved)")
        moved += len(keys)
    for node in sorted(nodes, key=lambda n: n is not target):  # the new owner first, as redis-cli does
        cli(node.port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
    return moved


def stop_cluster(nodes: list[RedisServer]) -> None:
    for node in nodes:
        node.stop()


def worker_env(url: str, queue: str) -> dict[str, str]:
    """The environment of a worker process (or the command line) on the cluster of ``url``, serving ``queue``: this
    process's, without its ``JOBS_`` settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    return env | {"JOBS_REDIS_CLUSTER": "true", "JOBS_REDIS_URL": url, "JOBS_QUEUE_NAME": queue, "JOBS_MAX_JOBS": "20"}


async def queue_client(url: str, queue: str, codec: Codec) -> JobClient:
    """A client of the cluster of ``url`` whose jobs go to ``queue``."""
    settings = Settings(redis_cluster=True, redis_url=url, queue_name=queue)
    return await JobClient.connect(settings.redis_settings(), codec)


async def results_stored(redis: RedisCluster, ids: list[str]) -> bool:
    """Whether every job of ``ids`` has its result stored (read 500 keys a call)."""
    found = 0
    for i in range(0, len(ids), 500):
        found += int(await redis.exists(*[result_key_prefix + job_id for job_id in ids[i : i + 500]]))
    return found == len(ids)
