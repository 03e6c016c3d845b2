"""The keyspace: a queue named with a hash tag keeps every key it uses in one slot (Redis Cluster's rule for a Lua
script or a transaction), on a single node nothing changes for untagged queues, and a worker refuses a key layout
it does not understand."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from importlib.resources import files
from uuid import uuid4

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, JobStatus
from arq.worker import Worker as ArqWorker
from redis.crc import key_slot

from src.runner import Codec, JobClient, JobContext, JobFailed, cron, job
from src.runner import constants as k
from src.runner.cron_state import cron_states, forget
from src.runner.dlq import DeadLetters
from src.runner.errors import KeyLayoutError
from src.runner.keyspace import abort_key, hash_tag, tagged_id
from src.runner.queue_admin import list_jobs, purge_queue
from src.runner.queue_stats import queue_stats
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from src.runner.worker_registry import live_workers
from tests.clusters import start_single_node_cluster
from tests.conftest import TEST_POLL_DELAY_S, worker_running
from tests.sample_jobs import add, flaky, nap, refuse, reports
from tests.waiting import wait_for


@job(max_concurrency=1, concurrency_key="who")
async def one_each(ctx: JobContext, who: str) -> str:
    return who


@job(rate_limit="50/s")
async def paced(ctx: JobContext) -> None:
    pass


#: keys that name no queue: each is read or written alone, never in a script or transaction with a queue's keys
GLOBAL_KEYS = {k.QUEUES_KEY, k.CRON_ENTRIES_KEY, k.LAYOUT_KEY}


# hash tags ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "tag"),
    [("{orders}", "{orders}"), ("eu{orders}2", "{orders}"), ("{a}{b}", "{a}"), ("x}y{z}", "{z}"), ("{a|b}", "{a|b}"),
     ("{}x", ""), ("x{", ""), ("arq:queue", "")],
)  # fmt: skip
def test_hash_tag_is_what_redis_hashes(name: str, tag: str) -> None:
    assert hash_tag(name) == tag
    job_id = tagged_id(name, "3f2a")
    if tag:
        assert job_id == tag + "3f2a"
        for key in (job_id, k.job_key_prefix + job_id, k.in_progress_key_prefix + job_id, k.DLQ_KEY_PREFIX + name):
            assert key_slot(key.encode()) == key_slot(name.encode()), key
    else:
        assert job_id == "3f2a"  # an untagged queue's ids are as they always were


def test_tagging_an_id_twice_changes_nothing() -> None:
    assert tagged_id("{orders}", tagged_id("{orders}", "mine")) == "{orders}mine"


def test_the_abort_set_is_arqs_on_a_single_node_and_per_queue_in_a_cluster() -> None:
    assert abort_key("{orders}", cluster=False) == k.abort_jobs_ss == "arq:abort"
    assert key_slot(abort_key("{orders}", cluster=True).encode()) == key_slot(b"{orders}")


def test_no_script_spells_a_key_prefix() -> None:
    """Prefixes reach the scripts from constants.py: a literal in a script would drift from it."""
    for path in files("src.runner").joinpath("scripts").iterdir():
        text = path.read_text()
        literals = re.findall(r"""['"](?:arq|jobs):[a-z-]*:?""", text)
        assert not literals, f"{path.name} spells {literals}"


# a tagged queue on a cluster node ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    node = start_single_node_cluster(tmp_path_factory.mktemp("cluster-node"))
    yield node
    node.stop()


@pytest.fixture
async def on_cluster_node(cluster_node: RedisServer, codec: Codec) -> AsyncIterator[tuple[RedisSettings, ArqRedis]]:
    settings = RedisSettings(host="127.0.0.1", port=cluster_node.port)
    pool = await create_pool(settings, job_serializer=codec.dumps, job_deserializer=codec.loads)
    await pool.flushall()
    yield settings, pool
    await pool.aclose(close_connection_pool=True)


@pytest.mark.timeout(60)
async def test_a_tagged_queue_keeps_every_key_in_its_slot(
    on_cluster_node: tuple[RedisSettings, ArqRedis], codec: Codec
) -> None:
    """Everything a queue does, on a node that refuses a script or transaction spanning two slots; then every key
    in Redis but the few global ones hashes to the queue's slot."""
    settings, redis = on_cluster_node
    queue = f"{{q-{uuid4().hex[:8]}}}"
    tag = hash_tag(queue)
    every_second = cron("tick", "* * * * * *", add, kwargs={"a": 1, "b": 1})
    worker = Worker(
        [add, flaky, refuse, nap, reports, one_each, paced], redis_settings=settings, handle_signals=False, codec=codec,
        queue_name=queue, poll_delay=TEST_POLL_DELAY_S, cron_entries=[every_second],
    )  # fmt: skip
    client = JobClient(redis, codec, queue_name=queue)
    async with worker_running(worker):
        done = await client.enqueue(add, 1, 2)
        assert done.job_id.startswith(tag)
        assert await done.result(timeout_s=5) == 3
        mine = await client.enqueue(add.options(job_id="mine"), 2, 2)
        assert mine.job_id == tag + "mine"
        assert await mine.result(timeout_s=5) == 4
        limited = [await client.enqueue(one_each, "acme") for _ in range(3)] + [await client.enqueue(paced)]
        assert [await h.result(timeout_s=5) for h in limited] == ["acme"] * 3 + [None]  # held, promoted, paced
        assert await (await client.enqueue(flaky, 1)).result(timeout_s=5) == 2
        dead = await client.enqueue(refuse)
        with pytest.raises(JobFailed):
            await dead.result(timeout_s=5)
        letters = DeadLetters(redis, queue)
        assert await letters.requeue(dead.job_id)
        await wait_for(lambda: letters.get(dead.job_id), 5)
        assert await letters.purge(dead.job_id)
        noted = await client.enqueue(reports, 0.01)
        await noted.result(timeout_s=5)
        assert (await noted.info()).progress is not None
        running = await client.enqueue(nap, 5)
        await wait_for(lambda: running.job_id in worker.running, 5)
        assert await running.abort(timeout_s=5)
        later = await client.enqueue(add.options(defer_by=60), 1, 1)
        assert await later.abort(timeout_s=1)
        await wait_for(lambda: _cron_finished(redis), 5)
        assert [w.worker_id for w in await live_workers(redis, queue)] == [worker.worker_id]
        assert worker.worker_id.startswith(tag)
        await client.enqueue(add.options(defer_by=60), 1, 1)
        stats = await queue_stats(redis, queue)
        assert (stats.deferred, stats.dead, [w.worker_id for w in stats.workers]) == (1, 0, [worker.worker_id])
        assert len(await list_jobs(redis, codec.loads, queue)) == 1
        assert await purge_queue(redis, queue) == 1
    assert await forget(redis, tag + "tick")
    keys = {key.decode() async for key in redis.scan_iter(count=1000)}
    strays = {key for key in keys - GLOBAL_KEYS if key_slot(key.encode()) != key_slot(queue.encode())}
    assert not strays, f"keys outside the queue's slot: {sorted(strays)}"


async def _cron_finished(redis: ArqRedis) -> bool:
    return any(state.last_status == "complete" for state in await cron_states(redis))


async def test_a_worker_refuses_an_untagged_queue_on_a_cluster(
    on_cluster_node: tuple[RedisSettings, ArqRedis], codec: Codec
) -> None:
    settings, _ = on_cluster_node
    worker = Worker([add], redis_settings=settings, handle_signals=False, codec=codec, queue_name="orders")
    with pytest.raises(KeyLayoutError, match=r"^queue 'orders' has no hash tag .*\{orders\}"):
        await worker.main()
    await worker.close()


async def test_arq_abort_on_a_cluster_is_per_queue(
    on_cluster_node: tuple[RedisSettings, ArqRedis], codec: Codec
) -> None:
    """arq's one ``arq:abort`` set cannot share a slot with every queue: on a cluster each queue has its own."""
    settings, redis = on_cluster_node
    queue = "{aborts}"
    worker = Worker([nap], redis_settings=settings, handle_signals=False, codec=codec, queue_name=queue)
    client = JobClient(redis, codec, queue_name=queue)
    async with worker_running(worker):
        running = await client.enqueue(nap, 5)
        await wait_for(lambda: running.job_id in worker.running, 5)
        assert await running.abort(timeout_s=5)
    assert not await redis.exists(k.abort_jobs_ss)


# the key-layout marker ----------------------------------------------------------------------------------------
async def test_a_worker_writes_the_layout_marker(redis: ArqRedis, make_worker: Callable[..., Worker]) -> None:
    worker = make_worker([add])
    async with worker_running(worker):
        await wait_for(lambda: redis.get(k.LAYOUT_KEY), 5)
    assert await redis.get(k.LAYOUT_KEY) == str(k.KEY_LAYOUT_VERSION).encode()


@pytest.mark.parametrize("marker", [b"2", b"not a version"])
async def test_a_worker_refuses_a_layout_it_does_not_know(
    redis: ArqRedis, make_worker: Callable[..., Worker], marker: bytes
) -> None:
    await redis.set(k.LAYOUT_KEY, marker)
    worker = make_worker([add])
    with pytest.raises(KeyLayoutError) as refused:
        await worker.main()
    message = str(refused.value)
    assert "\n" not in message
    assert f"key layout {marker.decode()!r}" in message and f"layout {k.KEY_LAYOUT_VERSION}" in message


# stock arq on a tagged queue (single node) ------------------------------------------------------------------
async def test_arq_client_and_job_api_work_on_a_tagged_queue(
    redis: ArqRedis, codec: Codec, running_worker: Callable[..., Worker]
) -> None:
    queue = "{arq-compat}"
    running_worker([add, nap], queue_name=queue)
    client = JobClient(redis, codec, queue_name=queue)
    stock = await redis.enqueue_job("add", 1, 2, _queue_name=queue)
    assert stock is not None
    assert await stock.result(timeout=5, poll_delay=0.01) == 3
    ours = await client.enqueue(add, 2, 3)
    job = Job(ours.job_id, redis, _queue_name=queue, _deserializer=codec.loads)
    assert await job.result(timeout=5, poll_delay=0.01) == 5
    assert await job.status() is JobStatus.complete
    napping = await client.enqueue(nap, 5)
    arq_job = Job(napping.job_id, redis, _queue_name=queue, _deserializer=codec.loads)
    await wait_for(lambda: redis.exists(k.in_progress_key_prefix + napping.job_id), 5)
    assert await arq_job.abort(timeout=5, poll_delay=0.01)


async def test_a_stock_arq_worker_runs_tagged_jobs(redis: ArqRedis, codec: Codec) -> None:
    queue = "{arq-stock}"
    handle = await JobClient(redis, codec, queue_name=queue).enqueue(add, 4, 4)
    stock = ArqWorker(
        [add.arq_function()], redis_pool=redis, burst=True, poll_delay=TEST_POLL_DELAY_S, handle_signals=False,
        queue_name=queue, job_serializer=codec.dumps, job_deserializer=codec.loads,
    )  # fmt: skip
    await stock.main()
    assert await handle.result(timeout_s=1) == 8
