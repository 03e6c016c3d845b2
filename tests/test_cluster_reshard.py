"""A queue's slot moved to another master (a reshard) with its jobs in it, a real worker process on the queue and a
producer enqueueing meanwhile: the worker's pop, claims and outcomes follow the slot (``MOVED``), enqueues sent
during the move are redirected (``ASK``) or retried (``TRYAGAIN``), and every acknowledged job runs.

The queue is paused while its slot moves, as README "Scaling out" advises: Redis 7 moves a slot key by key, and a
claim reads keys it finds through the queue (a job's definition) that may already be on the new master."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from src.runner import Codec, JobHandle
from src.runner.pausing import pause, resume
from src.runner.redis_server import RedisServer
from tests.cluster_settings import counted
from tests.clusters import cli, migrate_slot, queue_client, results_stored, start_cluster, stop_cluster, worker_env
from tests.spawn import Spawner
from tests.waiting import wait_for

JOBS = 1000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RedisServer]]:
    nodes = start_cluster(tmp_path / "cluster")
    yield nodes
    stop_cluster(nodes)


def _server_of(cluster: list[RedisServer], redis: RedisCluster, key: str) -> RedisServer:
    node = redis.get_node_from_key(key)
    assert node is not None
    return next(n for n in cluster if n.port == node.port)


@pytest.mark.timeout(180)
async def test_a_queue_slot_moved_to_another_master_loses_no_job(
    cluster: list[RedisServer], spawn: Spawner, codec: Codec
) -> None:
    queue = "{moving}"
    url = f"redis://127.0.0.1:{cluster[0].port}"
    client = await queue_client(url, queue, codec)
    redis: RedisCluster = client.redis  # type: ignore[assignment]  # a cluster client
    try:
        await pause(client.redis, queue)
        env = worker_env(url, queue)
        worker = spawn([sys.executable, "-m", "arq", "tests.cluster_settings.WorkerSettings"], name="worker", env=env)
        handles = await client.enqueue_many([counted.options(queue_name=queue).call(0.005) for _ in range(JOBS)])
        source = _server_of(cluster, redis, queue)
        target = next(n for n in cluster if n is not source)
        during: list[JobHandle[None]] = []
        moving = True

        async def produce() -> None:
            """Enqueue one job after another while the slot moves; keep those acknowledged (stopped between two
            enqueues, not in one: a cancelled enqueue may be written without its acknowledgement)."""
            while moving:
                try:
                    during.append(await client.enqueue(counted.options(queue_name=queue), 0.005))
                except RedisError:
                    pass  # refused while the keys are split between the masters: not acknowledged
                await asyncio.sleep(0.005)

        producing = asyncio.create_task(produce())
        try:
            moved = await asyncio.to_thread(migrate_slot, cluster, redis.keyslot(queue), source, target)
        finally:
            moving = False
            await producing
        assert moved > JOBS  # the queue, its jobs' definitions and the worker's keys
        slot = str(redis.keyslot(queue))
        assert int(cli(source.port, "CLUSTER", "COUNTKEYSINSLOT", slot)) == 0
        assert int(cli(target.port, "CLUSTER", "COUNTKEYSINSLOT", slot)) > JOBS
        await resume(client.redis, queue)

        ids = [h.job_id for h in handles + during if h.enqueued]
        assert len(ids) > JOBS, "no enqueue during the move was acknowledged"
        await wait_for(lambda: results_stored(redis, ids), 90, message="every acknowledged job done after the move")
        runs = await redis.hgetall(f"{queue}runs")
        assert set(runs) == {i.encode() for i in ids}
        assert worker.poll() is None, "the worker stopped"
    finally:
        await client.close()
