"""Redis Cluster failover: three masters with a replica each; one master is killed (SIGKILL) while real worker
processes run jobs on queues placed on every master. Its replica takes over, the workers and the client follow it
(connection errors and ``MOVED`` are an outage: ridden out, then the new master is used), and every acknowledged job
(``WAIT 1`` after the enqueue: the replica has it) completes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from src.runner import Codec, JobClient
from src.runner import constants as k
from src.runner.redis_server import RedisServer
from src.runner.result_waiters import RECHECK_S
from src.settings import Settings
from tests.cluster_settings import counted
from tests.clusters import masters_of, start_cluster, stop_cluster
from tests.spawn import Spawner
from tests.waiting import wait_for

#: jobs per queue; with 0.1 s each and 20 at once per worker, each queue runs for about 10 s
JOBS = 2000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RedisServer]]:
    nodes = start_cluster(tmp_path / "cluster", replicas=1, node_timeout_ms=1000)
    yield nodes
    stop_cluster(nodes)


def _env(cluster: list[RedisServer], queue: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    seeds = f"redis://127.0.0.1:{cluster[1].port}"  # any node; not the one killed below, to start faster
    return {
        **env, "JOBS_REDIS_CLUSTER": "true", "JOBS_REDIS_URL": seeds, "JOBS_QUEUE_NAME": queue, "JOBS_MAX_JOBS": "20",
    }  # fmt: skip


def _queues_on_masters(redis: RedisCluster) -> list[str]:
    chosen: dict[str, str] = {}
    for i in range(1000):
        node = redis.get_node_from_key(f"{{fo{i}}}")
        assert node is not None
        chosen.setdefault(node.name, f"{{fo{i}}}")
        if len(chosen) == 3:
            return list(chosen.values())
    raise AssertionError("fewer than three masters")


async def _done(client: JobClient, ids: list[str]) -> int | None:
    """How many of ``ids`` (one queue's) have a result; None while the cluster does not answer."""
    try:
        found = 0
        for i in range(0, len(ids), 500):
            found += int(await client.redis.exists(*[k.result_key_prefix + job_id for job_id in ids[i : i + 500]]))
    except (RedisError, OSError):
        return None
    return found


@pytest.mark.timeout(240)
async def test_workers_and_client_follow_a_master_killed_and_every_acknowledged_job_completes(
    cluster: list[RedisServer], spawn: Spawner, codec: Codec
) -> None:
    settings = Settings(redis_cluster=True, redis_url=f"redis://127.0.0.1:{cluster[1].port}", queue_name="{fo0}")
    client = await JobClient.connect(settings.redis_settings(), codec)
    redis: RedisCluster = client.redis  # type: ignore[assignment]  # a cluster client
    try:
        queues = _queues_on_masters(redis)
        ids: dict[str, list[str]] = {}
        for queue in queues:
            handles = await client.enqueue_many([counted.options(queue_name=queue).call(0.1) for _ in range(JOBS)])
            ids[queue] = [h.job_id for h in handles]
            # acknowledged: the queue's replica has every job (a failover keeps them)
            node = redis.get_node_from_key(queue)
            assert await redis.execute_command("WAIT", 1, 10_000, target_nodes=node) == 1
        arq_worker = [sys.executable, "-m", "arq", "tests.cluster_settings.WorkerSettings"]
        workers = [spawn(arq_worker, name=f"worker-{q}", env=_env(cluster, q)) for q in queues]
        victim_queue = queues[0]
        # the client's subscription to result announcements is on the victim's master: it must move too
        assert await client._result_waiters(victim_queue) is not None
        victim = redis.get_node_from_key(victim_queue)
        assert victim is not None
        victim_server = next(n for n in cluster if n.port == victim.port)

        async def some_done() -> bool:
            return (await _done(client, ids[victim_queue]) or 0) >= JOBS // 5

        await wait_for(some_done, 60, message="a fifth of the victim's jobs done before the kill")
        assert (await _done(client, ids[victim_queue]) or 0) < JOBS, "the kill must fall while jobs run"
        victim_server.kill()
        survivors = [n for n in cluster if n is not victim_server]
        await wait_for(lambda: len(masters_of(survivors)) == 3, 30, message="the replica promoted")

        for queue in queues:

            async def all_done(queue: str = queue) -> bool:
                return await _done(client, ids[queue]) == JOBS

            await wait_for(all_done, 120, message=lambda q=queue: f"every job of {q} done after the failover")
        for queue in queues:
            runs = await redis.hgetall(f"{queue}runs")
            assert set(runs) == {i.encode() for i in ids[queue]}  # every job ran, none lost
        # a job enqueued now is announced to a waiter again: woken, not found by the re-read every RECHECK_S
        handle = await client.enqueue(counted.options(queue_name=victim_queue), 0)
        started = time.monotonic()
        await handle.result(timeout_s=30)
        assert time.monotonic() - started < RECHECK_S / 2
        for worker in workers:
            assert worker.poll() is None, "a worker stopped"
    finally:
        await client.close()
