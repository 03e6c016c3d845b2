"""A real Redis Cluster of three masters on loopback, through redis-py's asyncio cluster client.

The hot path's scripts (enqueue, claim, finish) run on queues placed on different masters, each in its queue's
slot; then real worker processes (``arq tests.cluster_settings.WorkerSettings``, ``JOBS_REDIS_CLUSTER=true``), one
per queue, run jobs, retries, dead letters, aborts and cron there, and the CLI reads the cluster.
A workflow's enqueue and advance (workflow.lua, the finish script) stay in the queue's slot too.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest
from arq.jobs import Job, JobStatus, deserialize_result, serialize_result
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from src.runner import Codec, JobClient, JobHandle, chord, group, workflow_steps
from src.runner import constants as k
from src.runner.claim import Claimer
from src.runner.dashboard import dashboard
from src.runner.dlq import DeadLetters
from src.runner.errors import JobFailed, KeyLayoutError
from src.runner.finish import Finisher, Outcome
from src.runner.keyspace import abort_key, tagged_id
from src.runner.layout import is_cluster
from src.runner.limits import Limit, declare_limits, limit_rows
from src.runner.outage import is_refusal
from src.runner.pools import create_pool
from src.runner.queue_admin import purge_queue
from src.runner.redis_server import RedisServer
from src.runner.scripts import script
from src.runner.wakeup import WakeUp
from src.runner.workflow_ids import step_id
from src.settings import Settings
from tests.clusters import cli, start_cluster, stop_cluster
from tests.limit_jobs import one_per_customer
from tests.sample_jobs import add, flaky, nap, refuse
from tests.spawn import Spawner
from tests.waiting import wait_for
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
    first, second, _ = _queues_on_masters(redis, "q")
    return first, second


def _queues_on_masters(redis: RedisCluster, stem: str, count: int = 3) -> list[str]:
    """``count`` tagged queue names (``{<stem><i>}``) whose slots are served by ``count`` different masters."""
    chosen: dict[str, str] = {}
    for i in range(1000):
        queue = f"{{{stem}{i}}}"
        chosen.setdefault(_master_of(redis, queue), queue)
        if len(chosen) == count:
            return list(chosen.values())
    raise AssertionError(f"fewer than {count} masters serve the queues tried")


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


async def test_a_waiter_is_woken_by_an_announcement_made_on_another_master(redis: RedisCluster, codec: Codec) -> None:
    """One subscription (on the master of the first queue watched) hears the queues of every master: a plain
    PUBLISH, also from a script, reaches every node of the cluster."""
    first, other, _ = _queues_on_masters(redis, "ann")
    client = JobClient(redis, codec, queue_name=other)  # type: ignore[arg-type]
    waiters = await client._result_waiters(first)
    assert waiters is not None, "no subscription on the cluster"
    try:
        assert await client._result_waiters(other) is waiters
        handle = await client.enqueue(add, 1, 2)  # no worker: it stays queued
        announced = waiters.expect(handle.job_id)
        assert await client.abort(handle.job_id)  # the abort script announces it, on the other queue's master
        await asyncio.wait_for(announced, 5)
    finally:
        await waiters.close()


async def test_what_cannot_work_on_a_cluster_is_refused_with_what_to_do(
    cluster: list[RedisServer], codec: Codec
) -> None:
    settings = Settings(redis_cluster=True, redis_url=f"redis://127.0.0.1:{cluster[0].port}", queue_name="{ok}")
    pool = await create_pool(settings.redis_settings())
    try:
        client = JobClient(pool, codec, queue_name="{ok}")
        with pytest.raises(KeyLayoutError, match=r"queue 'plain' has no hash tag .* e\.g\. '\{plain\}'"):
            await client.enqueue(add.options(queue_name="plain"), 1)
        # arq's own client and Job API use MULTI over keys the cluster client cannot join
        with pytest.raises(RedisClusterException, match=r"no MULTI transactions .* use JobClient and JobHandle"):
            await pool.enqueue_job("add", 1, _queue_name="{ok}")
        with pytest.raises(RedisClusterException, match="no MULTI transactions"):
            await Job("{ok}1", pool, _queue_name="{ok}").status()
        assert await client.status("{ok}1", "{ok}") == JobStatus.not_found  # ours reads in one script
    finally:
        await pool.aclose()


async def test_the_wake_up_pop_follows_its_queue_slot_to_another_master(
    cluster: list[RedisServer], redis: RedisCluster
) -> None:
    """A slot moved (as a reshard or a failover moves it): the worker's blocking pop, on a connection of its own to
    the old master, gets ``MOVED`` — an outage, not a refusal — and its next wait is on the new master."""
    queue = _queues_on_masters(redis, "mv")[0]
    wake = WakeUp(redis, queue, tagged_id(queue, "w1"))  # type: ignore[arg-type]
    try:
        await redis.rpush(k.WAKE_KEY_PREFIX + queue, "1000")
        assert await wake.wait(1) == 1000.0
        _move_slot(cluster, redis.keyslot(queue), to=next(n for n in cluster if n.port != _port_of(redis, queue)))
        await redis.rpush(k.WAKE_KEY_PREFIX + queue, "2000")  # the cluster client follows MOVED itself
        with pytest.raises(RedisError) as raised:
            await wake.wait(1)
        assert not is_refusal(raised.value), raised.value
        assert await wake.wait(1) == 2000.0
    finally:
        await wake.close()


def _port_of(redis: RedisCluster, key: str) -> int:
    node = redis.get_node_from_key(key)
    assert node is not None
    return int(node.port)


def _move_slot(cluster: list[RedisServer], slot: int, to: RedisServer) -> None:
    """Give an empty slot to ``to`` (``CLUSTER SETSLOT … NODE`` on every master, the new owner first)."""
    target = cli(to.port, "CLUSTER", "MYID").strip()
    for node in sorted(cluster, key=lambda n: n is not to):
        cli(node.port, "CLUSTER", "SETSLOT", str(slot), "NODE", target)


def _cluster_env(cluster: list[RedisServer], queue: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    return {
        **env, "JOBS_REDIS_CLUSTER": "true", "JOBS_REDIS_URL": f"redis://127.0.0.1:{cluster[0].port}",
        "JOBS_QUEUE_NAME": queue,
    }  # fmt: skip


def _hasten(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    hasten = str(Path(sys.executable).parent / "hasten")
    return subprocess.run([hasten, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(120)
async def test_workers_run_jobs_retries_dead_letters_aborts_and_cron_on_three_masters(
    cluster: list[RedisServer], redis: RedisCluster, spawn: Spawner, codec: Codec
) -> None:
    queues = _queues_on_masters(redis, "work")
    assert len({_master_of(redis, q) for q in queues}) == 3
    arq_worker = [sys.executable, "-m", "arq", "tests.cluster_settings.WorkerSettings"]
    workers = [spawn(arq_worker, name=f"worker-{queue}", env=_cluster_env(cluster, queue)) for queue in queues]
    settings = Settings(redis_cluster=True, redis_url=f"redis://127.0.0.1:{cluster[0].port}", queue_name=queues[0])
    client = await JobClient.connect(settings.redis_settings(), codec, queue_name=queues[0])
    try:
        for queue in queues:
            await _check_one_queue(client, queue)

        # cron: every worker evaluates its table; each queue's ticks run once each, on its own master
        async def ticks_of_every_queue() -> list[str] | None:
            ticks = [t.decode().split()[0] for t in await redis.lrange("cluster-ticks", 0, -1)]
            return ticks if all(sum(t.startswith(q) for t in ticks) >= 2 for q in queues) else None

        ticks = await wait_for(ticks_of_every_queue, 30, message="two cron ticks of every queue")
        assert len(ticks) == len(set(ticks)), "a tick ran twice"
        for queue in queues:
            cli = _cluster_env(cluster, queue)
            status = _hasten(cli, "status", "--json")
            assert status.returncode == 0, status.stderr
            rows = {row["queue"]: row for row in json.loads(status.stdout)}
            assert rows[queue]["dead"] == 1
            listed = _hasten(cli, "dlq", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            [dead] = json.loads(listed.stdout)
            assert dead["function"] == "refuse"
            inspected = _hasten(cli, "inspect", dead["job_id"], "--json")
            assert inspected.returncode == 0, inspected.stderr
            assert json.loads(inspected.stdout)["status"] == "complete"  # failed for good: its result is kept
        await _check_dashboard(cluster, queues)
        # arq's own health check, through the cluster client: the worker's health-check key is on the queue's master
        check = [*arq_worker, "--check"]
        checked = subprocess.run(
            check, env=_cluster_env(cluster, queues[2]), capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0 and "Health check successful" in checked.stdout + checked.stderr, checked
        for worker in workers:
            assert worker.poll() is None, "a worker stopped"
    finally:
        await client.close()


async def _check_one_queue(client: JobClient, queue: str) -> None:
    """Jobs, a retry, a dead letter and an abort on ``queue``, run by its worker process."""
    handles = [await client.enqueue(add.options(queue_name=queue), i, 1) for i in range(20)]
    assert [await h.result(timeout_s=20) for h in handles] == [i + 1 for i in range(20)]
    retried = await client.enqueue(flaky.options(queue_name=queue), 1)
    assert await retried.result(timeout_s=20) == 2  # the second try succeeded
    dead = await client.enqueue(refuse.options(queue_name=queue))
    with pytest.raises(JobFailed):
        await dead.result(timeout_s=20)
    letters = DeadLetters(client.redis, queue)
    assert [d.job_id for d in await letters.page()] == [dead.job_id]
    running: JobHandle[float] = await client.enqueue(nap.options(queue_name=queue), 30)

    async def started() -> bool:
        return await running.status() == JobStatus.in_progress

    await wait_for(started, 20, message="the long job started")
    assert await running.abort(timeout_s=10)


async def _check_dashboard(cluster: list[RedisServer], queues: list[str]) -> None:
    """The dashboard's API on the cluster: every queue's counts, a queue's dead letters, a bulk delete of them."""
    settings = Settings(
        redis_cluster=True, redis_url=f"redis://127.0.0.1:{cluster[0].port}", queue_name=queues[0],
        dashboard_token="t0ken",
    )  # fmt: skip
    app = dashboard(settings, jobs=[add])
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 50000))
    headers = {"Authorization": "Bearer t0ken"}
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers) as http:
        try:
            rows = {row["queue"]: row for row in (await http.get("/api/queues")).json()}
            assert all(rows[q]["dead"] == 1 for q in queues), rows
            dead = (await http.get("/api/dead-letters", params={"queue": queues[1]})).json()
            assert [d["function"] for d in dead] == ["refuse"]
            started = await http.post("/api/dead-letters-ops", params={"action": "delete", "queue": queues[1]})
            assert started.status_code == 202, started.text
            op_id = started.json()["op_id"]

            async def finished() -> dict[str, object] | None:
                row: dict[str, object] = (await http.get(f"/api/dead-letters-ops/{op_id}")).json()
                return row if row["done"] else None

            assert (await wait_for(finished, 20, message="the bulk delete done"))["acted"] == 1
            rows = {row["queue"]: row for row in (await http.get("/api/queues")).json()}
            assert [rows[q]["dead"] for q in queues] == [1, 0, 1]
        finally:
            await app.state.dashboard.close()


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
