"""Redis Sentinel: the client and real worker processes follow a failover — a graceful one (``SENTINEL FAILOVER``)
and a crash of the master (SIGKILL) — while 5,000 jobs run; every acknowledged job completes."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from src.runner import Codec, JobClient
from src.runner import constants as k
from src.settings import Settings, get_settings
from tests.fault_settings import tick
from tests.sentinels import MASTER_NAME, SentinelGroup, start_group
from tests.spawn import Spawner
from tests.waiting import wait_for

JOBS = 5000


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = start_group(tmp_path / "sentinel")
    yield group
    group.stop()


def _env(group: SentinelGroup) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    return {**env, "JOBS_REDIS_SENTINELS": group.addresses, "JOBS_REDIS_URL": f"redis://{MASTER_NAME}/0"}


async def _results(client: JobClient, ids: list[str]) -> int:
    found = 0
    for i in range(0, len(ids), 1000):
        found += int(await client.redis.exists(*[k.result_key_prefix + job_id for job_id in ids[i : i + 1000]]))
    return found


async def _enqueue_acknowledged(client: JobClient, n: int) -> list[str]:
    """Enqueue ``n`` jobs and wait until the replica has them (``WAIT``): acknowledged, a failover keeps them."""
    handles = await client.enqueue_many([tick.call(0.01) for _ in range(n)])
    assert await client.redis.execute_command("WAIT", 1, 10_000) == 1  # type: ignore[no-untyped-call]
    return [h.job_id for h in handles]


def _switched(spawn: Spawner, worker: subprocess.Popen[bytes]) -> bool:
    return "moved from" in spawn.output(worker)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["sentinel failover", "master killed"])
async def test_workers_and_client_follow_a_failover_and_every_job_completes(
    group: SentinelGroup, spawn: Spawner, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    env = _env(group)
    for key, value in env.items():
        if key.startswith("JOBS_"):
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    client = await JobClient.connect(Settings().redis_settings(), Codec())
    first_master = group.master_port()
    workers = [
        spawn([sys.executable, "-m", "arq", "tests.sentinel_settings.WorkerSettings"], name=f"worker{i}", env=env)
        for i in range(2)
    ]
    try:
        ids = await _enqueue_acknowledged(client, JOBS)

        async def some_done() -> bool:
            return await _results(client, ids) >= JOBS // 5

        await wait_for(some_done, 60, message="a fifth of the jobs done before the failover")
        if how == "sentinel failover":
            with redis.Redis(port=group.sentinels[0].port, socket_timeout=5) as sentinel:
                assert sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        else:
            group.server(first_master).kill()
        await wait_for(lambda: group.master_port() != first_master, 60, message="a new master elected")

        async def all_done() -> int | None:
            try:
                done = await _results(client, ids)
            except (redis.ConnectionError, redis.ReadOnlyError, redis.TimeoutError):
                return None  # the client's connection to the old master: the next one goes to the new one
            return done if done == JOBS else None

        await wait_for(all_done, 120, message=lambda: f"every job completed after the {how}")
        for worker in workers:
            switched = functools.partial(_switched, spawn, worker)
            await wait_for(switched, 30, message="the worker logged the switch")
            assert spawn.output(worker).count("moved from") == 1
    finally:
        await client.close()


def test_sentinels_that_do_not_answer_are_one_line() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    env |= {"JOBS_REDIS_SENTINELS": "127.0.0.1:1", "JOBS_REDIS_URL": f"redis://{MASTER_NAME}/0"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "hasten"), "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: cannot reach Redis at master 'mymaster' of the sentinels 127.0.0.1:1 (set JOBS_REDIS_SENTINELS): "
        "no sentinel answered with its address (are they up, and is that name monitored?)"
    )
