"""``hasten cluster move``: a queue's slot moved to another master while worker processes run its jobs and a
producer enqueues. The command pauses the queue, waits for its running jobs, moves the keys and resumes it; every
acknowledged job runs exactly once, no enqueue is refused (``TRYAGAIN`` is sent again), the workers follow the
slot (``MOVED``) without a restart, and another queue on the same master goes on. A move waits for a long job, or
gives up after ``--wait`` with the queue resumed and the slot where it was. Also: a move by other tools, without a
pause (the claim is refused while the slot is split)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.cluster import REPLICA
from redis.exceptions import RedisError

from src.runner import Codec, JobHandle
from src.runner import constants as k
from src.runner.claim import Claimer
from src.runner.keyspace import abort_key
from src.runner.pausing import pause, paused_since_ms
from src.runner.redis_server import RedisServer
from tests.cluster_settings import counted
from tests.clusters import cli, migrate_slot, queue_client, results_stored, start_cluster, stop_cluster, worker_env
from tests.sample_jobs import nap
from tests.spawn import Spawner
from tests.waiting import wait_for

JOBS = 600


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RedisServer]]:
    nodes = start_cluster(tmp_path / "cluster")
    yield nodes
    stop_cluster(nodes)


def _owner(cluster: list[RedisServer], queue: str) -> RedisServer:
    """The master that serves ``queue``'s slot, as the cluster says now (not a client's cached view)."""
    slot = int(cli(cluster[0].port, "CLUSTER", "KEYSLOT", queue))
    for node in cluster:
        if _serves(node, slot):
            return node
    raise AssertionError(f"no master serves slot {slot}")


def _serves(node: RedisServer, slot: int) -> bool:
    myself = next(line for line in cli(node.port, "CLUSTER", "NODES").splitlines() if "myself" in line)
    for part in myself.split()[8:]:
        low, _, high = part.partition("-")
        if low.isdigit() and int(low) <= slot <= int(high or low):
            return True
    return False


async def _move(url: str, queue: str, to: RedisServer, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "src.cli", "cluster", "move", queue, "--to", f"127.0.0.1:{to.port}", *extra]
    return await asyncio.to_thread(subprocess.run, args, env=worker_env(url, queue), capture_output=True, text=True,
                                   timeout=120)  # fmt: skip


@pytest.mark.timeout(240)
async def test_hasten_cluster_move_moves_a_busy_queue_and_loses_nothing(
    cluster: list[RedisServer], spawn: Spawner, codec: Codec
) -> None:
    queue = "{moving}"
    url = f"redis://127.0.0.1:{cluster[0].port}"
    client = await queue_client(url, queue, codec)
    redis: RedisCluster = client.redis  # type: ignore[assignment]  # a cluster client
    try:
        command = [sys.executable, "-m", "arq", "tests.cluster_settings.WorkerSettings"]
        workers = [spawn(command, name=f"worker{i}", env=worker_env(url, queue)) for i in range(2)]
        handles = await client.enqueue_many([counted.options(queue_name=queue).call(0.02) for _ in range(JOBS)])
        source = _owner(cluster, queue)
        target = next(n for n in cluster if n is not source)
        other = "{steady}"  # another queue on the same master, in another slot: not paused, not moved
        other_owner = _owner(cluster, other)
        assert other_owner is source
        workers.append(spawn(command, name="other-worker", env=worker_env(url, other)))
        others = await client.enqueue_many([counted.options(queue_name=other).call(0.02) for _ in range(200)])
        during: list[JobHandle[None]] = []
        moving = True

        async def produce() -> None:
            """Enqueue one job after another while the slot moves (and on the other queue): none may be refused."""
            while moving:
                during.append(await client.enqueue(counted.options(queue_name=queue), 0.001))
                others.append(await client.enqueue(counted.options(queue_name=other), 0.001))
                await asyncio.sleep(0.005)

        async def some_ran() -> bool:
            return int(await redis.hlen(f"{queue}runs")) > 20

        await wait_for(some_ran, 30, message="the workers started the queue's jobs")
        producing = asyncio.create_task(produce())
        try:
            moved = await _move(url, queue, target)
        finally:
            moving = False
            await producing
        assert moved.returncode == 0, moved.stderr
        assert f"to 127.0.0.1:{target.port}; queue resumed" in moved.stderr
        assert _owner(cluster, queue) is target
        slot = cli(source.port, "CLUSTER", "KEYSLOT", queue).strip()
        assert int(cli(source.port, "CLUSTER", "COUNTKEYSINSLOT", slot)) == 0
        assert await paused_since_ms(client.redis, queue) is None
        # after the move: more jobs, which only the same (not restarted) workers can run, on the new master
        after = await client.enqueue_many([counted.options(queue_name=queue).call(0.001) for _ in range(50)])
        ids = [h.job_id for h in handles + during + after if h.enqueued]
        assert len(ids) == JOBS + len(during) + 50 and len(during) > 10
        await wait_for(lambda: results_stored(redis, ids), 90, message="every acknowledged job done after the move")
        runs = await redis.hgetall(f"{queue}runs")
        assert {key.decode(): int(value) for key, value in runs.items()} == dict.fromkeys(ids, 1)
        assert all(w.poll() is None for w in workers), "a worker stopped"
        assert _owner(cluster, other) is other_owner
        for h in others:
            await h.result(timeout_s=30)  # raises unless it completed
    finally:
        await client.close()


@pytest.mark.timeout(180)
async def test_a_move_waits_for_a_running_job_or_gives_up_with_the_queue_resumed(
    cluster: list[RedisServer], spawn: Spawner, codec: Codec
) -> None:
    queue = "{napping}"
    url = f"redis://127.0.0.1:{cluster[0].port}"
    client = await queue_client(url, queue, codec)
    redis: RedisCluster = client.redis  # type: ignore[assignment]
    try:
        spawn([sys.executable, "-m", "arq", "tests.cluster_settings.WorkerSettings"], name="worker",
              env=worker_env(url, queue))  # fmt: skip
        source = _owner(cluster, queue)
        target = next(n for n in cluster if n is not source)
        long = await client.enqueue(nap.options(queue_name=queue), 8.0)

        async def running() -> bool:
            return bool(await redis.exists(k.in_progress_key_prefix + long.job_id))

        await wait_for(running, 30, message="the long job started")
        nowhere = await _move(url, queue, target, "--to", "127.0.0.1:1")  # the last --to wins
        assert nowhere.returncode == 1
        assert "'127.0.0.1:1' is not a master of this cluster (masters: 127.0.0.1:" in nowhere.stderr
        assert await paused_since_ms(client.redis, queue) is None  # refused before pausing
        gave_up = await _move(url, queue, target, "--wait", "1")
        assert gave_up.returncode == 1
        assert "1 job(s) of {napping} still running after 1s" in gave_up.stderr
        assert f"stays on 127.0.0.1:{source.port}; queue '{{napping}}' resumed" in gave_up.stderr
        assert "waiting for 1 running job(s)" in gave_up.stderr
        assert await paused_since_ms(client.redis, queue) is None
        assert _owner(cluster, queue) is source

        waited = await _move(url, queue, target, "--wait", "60")
        assert waited.returncode == 0, waited.stderr
        assert "waiting for 1 running job(s)" in waited.stderr
        assert await long.result(timeout_s=5) == 8.0  # done before the move, read after it
        assert _owner(cluster, queue) is target
        quick = await client.enqueue(nap.options(queue_name=queue), 0.01)
        assert await quick.result(timeout_s=30) == 0.01  # the worker follows the slot
        # the cron ticks held by the pause ran after it, each on its first try (following the slot closed no
        # connection a job was using)
        log = spawn.started[0].log.read_text()
        assert " failed (" not in log, log
    finally:
        await client.close()


@pytest.mark.timeout(60)
async def test_an_enqueue_refused_while_the_slot_is_split_is_sent_again_until_the_move_ends(
    cluster: list[RedisServer], codec: Codec
) -> None:
    """With the slot ``MIGRATING`` and the queue's keys still on the old master, an enqueue (a script over the queue
    and a new job's keys) is refused with ``TRYAGAIN`` — longer than redis-py's own attempts (about 0.4 s) — and
    still acknowledged, once, when the move ends."""
    queue = "{split}"
    url = f"redis://127.0.0.1:{cluster[0].port}"
    client = await queue_client(url, queue, codec)
    redis: RedisCluster = client.redis  # type: ignore[assignment]
    try:
        first = await client.enqueue(nap.options(queue_name=queue), 0.01)
        source = _owner(cluster, queue)
        target = next(n for n in cluster if n is not source)
        slot = str(redis.keyslot(queue))
        source_id, target_id = cli(source.port, "CLUSTER", "MYID").strip(), cli(target.port, "CLUSTER", "MYID").strip()
        cli(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        cli(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        started = asyncio.get_running_loop().time()
        enqueueing = asyncio.create_task(client.enqueue(nap.options(queue_name=queue), 0.02))
        await wait_for(lambda: asyncio.get_running_loop().time() - started > 1.5, 5, message="1.5 s of refusals")
        assert not enqueueing.done(), "the enqueue ended while its keys were split"
        migrate_slot(cluster, int(slot), source, target)
        second = await asyncio.wait_for(enqueueing, 20)
        assert second.enqueued
        assert _owner(cluster, queue) is target
        queued = await redis.zrange(queue, 0, -1)
        assert sorted(queued) == sorted([first.job_id.encode(), second.job_id.encode()])
    finally:
        await client.close()


@pytest.mark.timeout(240)
async def test_a_slot_moved_by_other_tools_without_a_pause_loses_no_job(
    cluster: list[RedisServer], spawn: Spawner, codec: Codec
) -> None:
    """A move as ``redis-cli --cluster reshard`` does it, key batch by key batch, with the queue NOT paused while
    worker processes run its jobs and a producer enqueues: the scripts that read keys found through the queue are
    refused (``TRYAGAIN``) while the slot is split and sent again after, so every acknowledged job runs."""
    queue = "{unpaused}"
    url = f"redis://127.0.0.1:{cluster[0].port}"
    client = await queue_client(url, queue, codec)
    redis: RedisCluster = client.redis  # type: ignore[assignment]
    try:
        command = [sys.executable, "-m", "arq", "tests.cluster_settings.WorkerSettings"]
        workers = [spawn(command, name=f"worker{i}", env=worker_env(url, queue)) for i in range(2)]
        handles = await client.enqueue_many([counted.options(queue_name=queue).call(0.02) for _ in range(JOBS)])
        source = _owner(cluster, queue)
        target = next(n for n in cluster if n is not source)
        during: list[JobHandle[None]] = []
        moving = True

        async def produce() -> None:
            while moving:
                during.append(await client.enqueue(counted.options(queue_name=queue), 0.001))
                await asyncio.sleep(0.005)

        async def some_ran() -> bool:
            return int(await redis.hlen(f"{queue}runs")) > 20

        await wait_for(some_ran, 30, message="the workers started the queue's jobs")
        assert int(await redis.hlen(f"{queue}runs")) < JOBS, "the jobs were done before the move"
        producing = asyncio.create_task(produce())
        try:
            await asyncio.to_thread(migrate_slot, cluster, redis.keyslot(queue), source, target)
        finally:
            moving = False
            await producing
        assert _owner(cluster, queue) is target
        ids = [h.job_id for h in handles + during if h.enqueued]
        assert len(ids) == JOBS + len(during)
        await wait_for(lambda: results_stored(redis, ids), 90, message="every acknowledged job done after the move")
        runs = await redis.hgetall(f"{queue}runs")
        assert {key.decode() for key in runs} == set(ids)
        assert all(w.poll() is None for w in workers), "a worker stopped"
    finally:
        await client.close()


@pytest.mark.timeout(60)
async def test_the_claim_is_refused_while_its_slot_moves_even_when_every_key_it_names_exists(
    cluster: list[RedisServer], codec: Codec
) -> None:
    """The claim reads keys it finds through the queue (a handed job's in-progress key): it declares a key that is
    never written, so that Redis refuses it while the slot is ``MIGRATING`` even when every other key it names
    exists there (a paused queue, a handed job, limits, a rewind marker)."""
    queue = "{guarded}"
    url = f"redis://127.0.0.1:{cluster[0].port}"
    client = await queue_client(url, queue, codec)
    plain = RedisCluster(host="127.0.0.1", port=cluster[0].port)  # redis-py's own: gives up on TRYAGAIN in ~0.4 s
    try:
        await client.enqueue(nap.options(queue_name=queue), 0.01)  # the queue zset and its wake-up list
        await pause(client.redis, queue)  # (it empties the idle set: filled below)
        handed, worker = queue + "handed", queue + "w1"
        await plain.rpush(k.WORKER_LIST_PREFIX + worker, f"{len(handed)}:{handed}1:1:")
        await plain.zadd(k.IDLE_KEY_PREFIX + queue, {queue + "w2|100": 1})
        await plain.sadd(abort_key(queue, True), "none")
        await plain.hset(k.LIMITS_KEY_PREFIX + queue, "none", "{}")
        await plain.set(k.REWIND_KEY_PREFIX + queue, "0")
        await plain.rpush(k.WAKE_KEY_PREFIX + queue, "0")
        claimer = Claimer(plain, queue, worker, lease_ms=30_000, idle_ttl_ms=1_000, abort_set=abort_key(queue, True))
        named = claimer._keys[:8]  # every key but the guard
        for key in named:
            assert await plain.exists(key), f"{key} is missing: the guard would not be what refuses the claim"
        source = _owner(cluster, queue)
        target = next(n for n in cluster if n is not source)
        slot = str(plain.keyslot(queue))
        source_id, target_id = cli(source.port, "CLUSTER", "MYID").strip(), cli(target.port, "CLUSTER", "MYID").strip()
        cli(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        cli(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        with pytest.raises(RedisError):
            await claimer.claim(5)
        assert await plain.llen(k.WORKER_LIST_PREFIX + worker) == 1, "the claim ran while the slot was migrating"
        for node in (source, target):
            cli(node.port, "CLUSTER", "SETSLOT", slot, "STABLE")
        batch = await claimer.claim(5)  # the slot stable again: it runs, and takes the handed job
        assert [job.raw_id for job in batch.jobs] == [handed.encode()]
        assert await plain.llen(k.WORKER_LIST_PREFIX + worker) == 0
    finally:
        await plain.aclose()
        await client.close()


@pytest.mark.timeout(60)
async def test_a_script_is_loaded_on_a_master_the_client_takes_for_a_replica(
    cluster: list[RedisServer], codec: Codec
) -> None:
    """After a slot move redis-py's slot map can take a master for a replica (its incremental update on ``MOVED``
    races between tasks); a script that master lacks is still loaded there, and the enqueue goes through."""
    queue = "{relabelled}"
    url = f"redis://127.0.0.1:{cluster[0].port}"
    client = await queue_client(url, queue, codec)
    redis: RedisCluster = client.redis  # type: ignore[assignment]
    try:
        node = redis.get_node_from_key(queue)
        assert node is not None
        node.server_type = REPLICA  # what the race leaves behind
        cli(int(node.port), "SCRIPT", "FLUSH")
        handle = await client.enqueue(nap.options(queue_name=queue), 0.01)
        assert handle.enqueued
    finally:
        await client.close()
