"""The sync client from plain threads, against the real Redis and a real worker process: typed results, errors,
timeouts, many threads sharing one client, and the mistakes it refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from arq.connections import RedisSettings

from src.runner import JobFailed, JobStatus, ResultNotReady, SyncJobClient, WorkflowFailed, chain, chord, group
from src.runner.redis_server import RedisServer
from src.settings import get_settings
from tests import telemetry_jobs, workflow_jobs
from tests.spawn import Spawner

SETTINGS = "tests.telemetry_jobs.TelemetrySettings"


@pytest.fixture
def worker(redis_server: RedisServer, spawn: Spawner) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JOBS_REDIS_URL": redis_server.url}
    return spawn([sys.executable, "-m", "arq", SETTINGS], name="worker", env=env)


@pytest.fixture
def sync_client(redis_server: RedisServer) -> Iterator[SyncJobClient]:
    with SyncJobClient.connect(RedisSettings(host="127.0.0.1", port=redis_server.port)) as client:
        yield client


def test_enqueue_and_wait_for_a_typed_result(sync_client: SyncJobClient, worker: subprocess.Popen[bytes]) -> None:
    handle = sync_client.enqueue(telemetry_jobs.chatty, word="sync")
    assert handle.enqueued and handle.status() in (JobStatus.queued, JobStatus.in_progress, JobStatus.complete)
    assert handle.result(timeout_s=30) == "sync"
    assert handle.status() is JobStatus.complete
    assert handle.info().success


def test_threads_share_one_client(sync_client: SyncJobClient, worker: subprocess.Popen[bytes]) -> None:
    def enqueue_and_wait(i: int) -> list[str]:
        calls = [telemetry_jobs.chatty.call(word=f"{i}-{j}") for j in range(5)]
        return [h.result(timeout_s=30) for h in sync_client.enqueue_many(calls)]

    with ThreadPoolExecutor(8) as threads:
        results = list(threads.map(enqueue_and_wait, range(8)))
    assert results == [[f"{i}-{j}" for j in range(5)] for i in range(8)]


def test_a_failed_job_raises_as_in_async_code(sync_client: SyncJobClient, worker: subprocess.Popen[bytes]) -> None:
    with pytest.raises(JobFailed, match="never works"):
        sync_client.enqueue(telemetry_jobs.doomed).result(timeout_s=30)


def test_a_result_not_ready_in_time(sync_client: SyncJobClient) -> None:
    handle = sync_client.enqueue(telemetry_jobs.chatty, word="nobody runs me")  # no worker
    with pytest.raises(ResultNotReady):
        handle.result(timeout_s=0.2)
    assert handle.status() is JobStatus.queued
    assert handle.abort(timeout_s=2)


def test_a_workflow_from_sync_code(sync_client: SyncJobClient, redis_server: RedisServer, spawn: Spawner) -> None:
    """``enqueue_workflow`` as the async client's, run by a worker process; a failed one raises naming the step."""
    env = {**os.environ, "JOBS_REDIS_URL": redis_server.url}
    spawn([sys.executable, "-m", "arq", "tests.workflow_settings.WorkerSettings"], name="worker", env=env)
    handle = sync_client.enqueue_workflow(chord(group([workflow_jobs.add.s(i, i) for i in range(4)]),
                                                workflow_jobs.total.s()))  # fmt: skip
    assert handle.result(timeout_s=30) == 12
    assert handle.status() == "complete" and [s.status for s in handle.info().steps] == ["done"] * 5
    failing = sync_client.enqueue_workflow(chain(workflow_jobs.plus_one.s(1), workflow_jobs.refuse.s()))
    with pytest.raises(WorkflowFailed, match=r"step 1 refuse\(\)"):
        failing.result(timeout_s=30)


def test_refuses_its_own_loop_and_a_closed_client(redis_server: RedisServer) -> None:
    client = SyncJobClient.connect(RedisSettings(host="127.0.0.1", port=redis_server.port))

    async def from_the_clients_loop() -> None:
        client.enqueue(telemetry_jobs.chatty, word="deadlock")

    with pytest.raises(RuntimeError, match="its own event loop"):
        client.call(from_the_clients_loop())
    client.close()
    client.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        client.enqueue(telemetry_jobs.chatty, word="late")


def test_settings_open_one(env: pytest.MonkeyPatch) -> None:
    with get_settings().open_sync_client() as client:
        assert client.enqueue(telemetry_jobs.chatty, word="x").status() is JobStatus.queued
