"""A workflow across real worker processes: SIGKILL of the worker running a step leaves the workflow consistent —
another worker takes the step over after its lease, each step's result is recorded once and the fan-in runs once."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from arq.connections import ArqRedis

from src.runner import JobClient, chain, chord, group
from src.runner.workflow import WorkflowHandle
from src.runner.workflow_ids import step_id
from tests.conftest import StartWorker
from tests.waiting import wait_for
from tests.workflow_jobs import add, hang_once, plus_one, total

pytestmark = pytest.mark.timeout(90)

SETTINGS = "tests.workflow_settings.WorkerSettings"


async def _statuses(handle: WorkflowHandle[Any]) -> list[str]:
    return [step.status for step in (await handle.info()).steps]


async def _hung_in(redis: ArqRedis) -> int:
    async def hung() -> bytes | None:
        return await redis.lindex("hung", 0)  # type: ignore[no-any-return]

    pid = await wait_for(hung, 30, message="the hanging step never started")
    return int(pid)


async def test_sigkill_of_a_worker_mid_workflow_leaves_it_consistent(
    redis: ArqRedis, client: JobClient, start_process_worker: StartWorker
) -> None:
    first = start_process_worker(SETTINGS, JOBS_LEASE_S="1")
    # step 0, then a group of three (step 1 hangs in its first try), then the fan-in (step 4)
    flow = chain(plus_one.s(1), group([hang_once.s(), plus_one.s(), add.s(5)]), total.s())
    handle = await client.enqueue_workflow(flow)
    assert await _hung_in(redis) == first.pid

    async def siblings_done() -> bool:
        return await _statuses(handle) == ["done", "running", "done", "done", "held"]

    await wait_for(siblings_done, 10, message="the other members never finished")
    second = start_process_worker(SETTINGS, JOBS_LEASE_S="1")
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    assert await handle.result(timeout_s=30) == 2 * 10 + 3 + 7
    runs = {key.decode(): int(n) for key, n in (await redis.hgetall("runs")).items()}
    ids = [step_id(handle.workflow_id, i) for i in range(5)]
    # the killed try ran the hanging step once more, elsewhere; everything else ran once, the fan-in included
    assert runs == {ids[0]: 1, ids[1]: 2, ids[2]: 1, ids[3]: 1, ids[4]: 1}
    info = await handle.info()
    assert info.status == "complete"
    assert [(s.status, s.result) for s in info.steps] == [("done", 2), ("done", 20), ("done", 3), ("done", 7),
                                                          ("done", 30)]  # fmt: skip
    assert second.poll() is None


async def test_sigkill_of_the_worker_running_a_fan_in_member_runs_the_callback_once(
    redis: ArqRedis, client: JobClient, start_process_worker: StartWorker
) -> None:
    """Two workers share a chord's members from the start; the one running the hanging member is killed."""
    workers = [start_process_worker(SETTINGS, JOBS_LEASE_S="1") for _ in range(2)]
    handle = await client.enqueue_workflow(chord(group([add.s(i, i) for i in range(6)] + [hang_once.s(4)]), total.s()))
    hung_pid = await _hung_in(redis)
    killed = next(w for w in workers if w.pid == hung_pid)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)

    assert await handle.result(timeout_s=30) == sum(2 * i for i in range(6)) + 40
    runs = {key.decode(): int(n) for key, n in (await redis.hgetall("runs")).items()}
    assert runs[step_id(handle.workflow_id, 7)] == 1  # the fan-in
    assert runs[step_id(handle.workflow_id, 6)] == 2  # the killed try and the one that finished
    assert {step.status for step in (await handle.info()).steps} == {"done"}
