"""A real Redis Cluster of three masters on loopback, through redis-py's asyncio cluster client.

The first step of the cluster half: the hot path's scripts (enqueue, claim, finish, and a workflow's enqueue and
advance) run on queues placed on different masters, each script in its queue's slot. The worker itself does not run
on a cluster yet (its pool, blocking wake-up connection and transactions are single-node), so this test claims and
finishes with the worker's own parts.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
from arq.jobs import deserialize_result, serialize_result
from redis.asyncio.cluster import RedisCluster

from src.runner import Codec, JobClient, chord, group, workflow_steps
from src.runner import constants as k
from src.runner.claim import Claimer
from src.runner.finish import Finisher, Outcome
from src.runner.keyspace import abort_key, tagged_id
from src.runner.layout import is_cluster
from src.runner.limits import Limit, declare_limits, limit_rows
from src.runner.queue_admin import purge_queue
from src.runner.redis_server import RedisServer
from src.runner.scripts import script
from src.runner.workflow_ids import step_id
from tests.clusters import start_cluster, stop_cluster
from tests.limit_jobs import one_per_customer
from tests.sample_jobs import add
from tests.workflow_jobs import total

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    nodes = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield nodes
    stop_cluster(nodes)


@pytest.fixture
async def redis(cluster: list[RedisServer]) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster[0].port)
    await client.initialize()
    yield client
    await client.aclose()


def _queues_on_two_masters(redis: RedisCluster) -> tuple[str, str]:
    """Two tagged queue names whose slots are served by different masters."""
    first = "{q0}"
    owner = _master_of(redis, first)
    for i in range(1, 100):
        other = f"{{q{i}}}"
        if _master_of(redis, other) != owner:
            return first, other
    raise AssertionError("no second master found")


def _master_of(redis: RedisCluster, key: str) -> str:
    node = redis.get_node_from_key(key)
    assert node is not None
    return node.name


async def test_jobs_run_on_two_queues_on_different_masters(redis: RedisCluster, codec: Codec) -> None:
    assert await is_cluster(redis)  # type: ignore[arg-type]
    for queue in _queues_on_two_masters(redis):
        client = JobClient(redis, codec, queue_name=queue)  # type: ignore[arg-type]
        handles = [await client.enqueue(add, i, 1) for i in range(10)]
        assert all(h.enqueued and h.job_id.startswith(queue) for h in handles)
        worker_id = tagged_id(queue, "w1")
        aborts = abort_key(queue, cluster=True)
        claimer = Claimer(redis, queue, worker_id, lease_ms=30_000, idle_ttl_ms=1_000, abort_set=aborts)  # type: ignore[arg-type]
        batch = await claimer.claim(20)
        assert sorted(j.job_id for j in batch.jobs) == sorted(h.job_id for h in handles)
        finisher = Finisher(redis, queue, worker_id, dlq_retention_ms=60_000, abort_set=aborts)  # type: ignore[arg-type]
        now_ms = int(time.time() * 1000)
        for claimed in batch.jobs:
            job = codec.loads(claimed.payload)
            result = serialize_result(
                "add", (), job["k"], claimed.job_try, job["et"], True, job["k"]["a"] + job["k"]["b"], now_ms, now_ms,
                claimed.job_id, queue, worker_id, serializer=codec.dumps,
            )  # fmt: skip
            finisher.add(Outcome(claimed.raw_id, "done", result or b"", 60_000, succeeded=True))
        await finisher.drain()
        assert await redis.zcard(queue) == 0
        for i, handle in enumerate(handles):
            raw = await redis.get(k.result_key_prefix + handle.job_id)
            assert deserialize_result(raw, deserializer=codec.loads).result == i + 1


async def test_a_workflow_advances_within_its_queues_slot(redis: RedisCluster, codec: Codec) -> None:
    """Enqueue (workflow.lua) and the finish script's advance of a chord run on a cluster: every key they touch is in
    the queue's slot (a script touching another slot is refused there)."""
    queue = _queues_on_two_masters(redis)[1]
    client = JobClient(redis, codec, queue_name=queue, result_wakeups=False)  # type: ignore[arg-type]
    handle = await client.enqueue_workflow(chord(group([add.s(i, 1) for i in range(3)]), total.s()))
    worker_id = tagged_id(queue, "w1")
    aborts = abort_key(queue, cluster=True)
    claimer = Claimer(redis, queue, worker_id, lease_ms=30_000, idle_ttl_ms=1_000, abort_set=aborts)  # type: ignore[arg-type]
    finisher = Finisher(redis, queue, worker_id, dlq_retention_ms=60_000, abort_set=aborts)  # type: ignore[arg-type]
    ran: list[str] = []
    for _ in range(2):  # the members, then the callback the last member's outcome queued
        claimer.reset()
        for claimed in (await claimer.claim(20)).jobs:
            job = codec.loads(claimed.payload)
            kwargs = job["k"]
            if "wf" in job:  # the callback: its input from the workflow's state, as the worker reads it
                kwargs = await workflow_steps.with_input(redis, codec, queue, claimed.job_id, job["wf"], kwargs)  # type: ignore[arg-type]
            value = kwargs["a"] + kwargs["b"] if job["f"] == "add" else sum(kwargs["xs"])
            outcome = Outcome(claimed.raw_id, "done", b"", 0, succeeded=True)
            outcome.workflow = workflow_steps.encode_result(codec, claimed.job_id, queue, value)
            finisher.add(outcome)
            ran.append(job["f"])
        await finisher.drain()
    assert ran == ["add", "add", "add", "total"]
    assert (await handle.info()).status == "complete"
    assert await handle.result(timeout_s=5) == 6
    # an abort by hand of a held step (abort.lua) fails its workflow, in the same slot
    held = await client.enqueue_workflow(chord(group([add.s(1, 1)]), total.s()))
    fan_in = step_id(held.workflow_id, 1)
    job_keys = (k.in_progress_key_prefix, k.result_key_prefix, k.job_key_prefix, k.retry_key_prefix)
    keys = [queue, aborts, *(prefix + fan_in for prefix in job_keys), k.DONE_CHANNEL_PREFIX + queue]
    assert await script(redis, "abort")(keys=keys, args=[fan_in, int(time.time() * 1000), b"", 0]) == 1  # type: ignore[arg-type]
    assert (await held.info()).status == "failed"


async def test_limits_hold_and_promote_within_the_queues_slot(redis: RedisCluster, codec: Codec) -> None:
    """A limit per key with an odd key (braces, a newline): held, promoted (with the rewind marker and the set of
    buckets where jobs wait), aborted while held and purged, every key in the queue's slot."""
    queue = _queues_on_two_masters(redis)[1]
    await declare_limits(redis, queue, {"one_per_customer": Limit(1)})  # type: ignore[arg-type]
    client = JobClient(redis, codec, queue_name=queue, result_wakeups=False)  # type: ignore[arg-type]
    odd = "{other}\nkey"
    handles = [await client.enqueue(one_per_customer, odd, 0) for _ in range(4)]
    worker_id = tagged_id(queue, "w1")
    aborts = abort_key(queue, cluster=True)
    claimer = Claimer(redis, queue, worker_id, lease_ms=30_000, idle_ttl_ms=1_000, abort_set=aborts)  # type: ignore[arg-type]
    finisher = Finisher(redis, queue, worker_id, dlq_retention_ms=60_000, abort_set=aborts)  # type: ignore[arg-type]
    first = (await claimer.claim(20)).jobs
    assert len(first) == 1  # the others are held
    finisher.add(Outcome(first[0].raw_id, "done", b"", 0, succeeded=True))
    await finisher.drain()  # promotes the next one
    claimer.reset()
    second = (await claimer.claim(20)).jobs
    assert len(second) == 1 and second[0].job_id != first[0].job_id
    rest = [h.job_id for h in handles if h.job_id not in (first[0].job_id, second[0].job_id)]
    job_keys = (k.in_progress_key_prefix, k.result_key_prefix, k.job_key_prefix, k.retry_key_prefix)
    keys = [queue, aborts, *(prefix + rest[0] for prefix in job_keys), k.DONE_CHANNEL_PREFIX + queue]
    assert await script(redis, "abort")(keys=keys, args=[rest[0], int(time.time() * 1000), b"", 0]) == 1  # type: ignore[arg-type]
    assert await purge_queue(redis, queue) == 1  # type: ignore[arg-type]
    assert [r.held for r in await limit_rows(redis, queue) if r.key is not None] == [0]  # type: ignore[arg-type]
