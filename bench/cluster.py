"""The Redis Cluster line of the benchmark: one Redis against three cluster masters, the same workers.

Method (re-run it on bigger hardware with ``BENCH_ONLY=cluster make bench``; ``BENCH_CLUSTER_N`` jobs per run):

- **one node**: one redis-server, one queue, ``WORKERS`` worker processes on it;
- **cluster**: a local cluster of three masters (``tests/clusters.py``), three queues whose slots are on the three
  masters, one worker process per queue — the same number of workers.

Workers start first and idle; then the jobs (a job that does nothing) are enqueued in batches of 1,000 while the
workers drain them, and the run ends when every queue is empty. Drain rate = jobs ÷ (end − start of the enqueue).
Each node's redis-server CPU (``INFO cpu``, user + sys) over the run, divided by the jobs of its queues, is its CPU
per job (enqueue + claim + finish): Redis runs commands on one core, so ``1 s ÷ CPU per job`` is the most one
shard can carry (the projected per-shard ceiling), and a cluster of N masters with queues spread evenly carries N
times that once workers and clients are not the limit. On a 2-core machine the workers are the limit; what these
runs show is the per-shard cost, which is what a bigger machine's throughput is projected from.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.cluster_worker import blank
from src.cli import stop_processes
from src.runner import Codec, JobClient
from src.runner.redis_server import RedisServer
from src.runner.worker_registry import live_workers
from src.settings import Settings
from tests.clusters import start_cluster, stop_cluster

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_N = int(os.environ.get("BENCH_CLUSTER_N", "30000"))
WORKERS = 3
_BATCH = 1000


async def drain(variant: str, add: Any) -> None:
    """One run of ``variant`` (``one node`` or ``cluster``); ``add(metric, variant, value)`` records a sample."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    if variant == "cluster":
        nodes = start_cluster(data_dir)
        settings = Settings(redis_cluster=True, redis_url=f"redis://127.0.0.1:{nodes[0].port}", queue_name="{b0}")
    else:
        nodes = [RedisServer(data_dir, options={"save": "''", "appendonly": "no"}).start()]
        settings = Settings(redis_url=nodes[0].url, queue_name="{b0}")
    try:
        await _drain(variant, nodes, settings, add)
    finally:
        stop_cluster(nodes)


async def _drain(variant: str, nodes: list[RedisServer], settings: Settings, add: Any) -> None:
    client = await JobClient.connect(settings.redis_settings(), Codec())
    try:
        queues = _queues(client, nodes, variant)
        procs = [_worker(settings, queues[i % len(queues)]) for i in range(WORKERS)]
        try:
            await _wait_idle(client, queues)
            cpu_before = [_cpu_s(n) for n in nodes]
            started = time.perf_counter()
            per_queue = CLUSTER_N // len(queues)
            for i in range(0, per_queue, _BATCH):
                for queue in queues:  # interleaved, so that every queue drains from the start
                    spec = blank.options(queue_name=queue)
                    await client.enqueue_many([spec.call() for _ in range(min(_BATCH, per_queue - i))])
            await _wait_empty(client, queues)
            elapsed_s = time.perf_counter() - started
            used_us = [(_cpu_s(n) - before) * 1e6 for n, before in zip(nodes, cpu_before, strict=True)]
        finally:
            stop_processes(procs, timeout_s=20)
    finally:
        await client.close()
    total = per_queue * len(queues)
    add(f"{variant}: drain {total // 1000}k, {WORKERS} workers (jobs/s)", "ours", total / elapsed_s)
    shards = [u / (total / len(nodes)) for u in used_us]  # one queue per master: each holds total / masters
    for shard, cpu_us in enumerate(shards):
        add(f"{variant}: Redis CPU per job, shard {shard} (µs)", "ours", cpu_us)
    add(f"{variant}: projected ceiling per shard (jobs/s)", "ours", 1e6 / max(shards))


def _queues(client: JobClient, nodes: list[RedisServer], variant: str) -> list[str]:
    """On one node, one queue for all the workers; on the cluster, one queue on each master (tags tried in turn)."""
    if variant != "cluster":
        return ["{b0}"]
    chosen: dict[str, str] = {}
    for i in range(1000):
        node = client.redis.get_node_from_key(f"{{b{i}}}")  # type: ignore[attr-defined]  # a cluster client
        chosen.setdefault(node.name, f"{{b{i}}}")
        if len(chosen) == len(nodes):
            return list(chosen.values())
    raise RuntimeError("no queue found on some master")


def _worker(settings: Settings, queue: str) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    env |= {"JOBS_REDIS_URL": str(settings.redis_url), "JOBS_QUEUE_NAME": queue}
    if settings.redis_cluster:
        env["JOBS_REDIS_CLUSTER"] = "true"
    args = [sys.executable, "-m", "arq", "bench.cluster_worker.WorkerSettings"]
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _wait_idle(client: JobClient, queues: list[str]) -> None:
    """Until ``WORKERS`` workers are registered on the queues (started, idle)."""
    deadline = time.monotonic() + 60
    while sum([len(await live_workers(client.redis, q)) for q in queues]) < WORKERS:
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not start")
        await asyncio.sleep(0.05)


async def _wait_empty(client: JobClient, queues: list[str]) -> None:
    deadline = time.monotonic() + 600
    while any([await client.redis.zcard(q) for q in queues]):
        if time.monotonic() > deadline:
            raise TimeoutError("the queues did not drain")
        await asyncio.sleep(0.01)


def _cpu_s(node: RedisServer) -> float:
    """redis-server's own CPU time so far (user + sys), read from the node itself."""
    with redis.Redis(port=node.port) as r:
        cpu: dict[str, Any] = r.info("cpu")  # type: ignore[assignment]
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
