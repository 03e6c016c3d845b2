"""Workflows: chains, groups and fan-in give the right results, advanced by the finish script; a step that fails
for good fails the workflow once, naming it; a retried step runs its successor once."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_type

import pytest
from arq.connections import ArqRedis

from src.runner import (
    ArgumentsInvalid,
    Codec,
    EagerClient,
    JobClient,
    WorkflowFailed,
    WorkflowHandle,
    chain,
    chord,
    group,
)
from src.runner import constants as k
from src.runner.worker import Worker
from src.runner.workflow_ids import state_key, step_id
from tests.waiting import wait_for
from tests.workflow_jobs import ALL, add, flaky_once, plus_one, refuse, slow, text, total

pytestmark = pytest.mark.timeout(30)


async def _runs(redis: ArqRedis) -> dict[str, int]:
    return {key.decode(): int(value) for key, value in (await redis.hgetall("runs")).items()}


async def test_a_chain_passes_each_result_to_the_next(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(chain(add.s(1, 2), plus_one.s(), text.s(prefix="got ")))
    assert_type(handle, WorkflowHandle[str])  # typed by the last step (mypy checks this line)
    assert await handle.result(timeout_s=10) == "got 4"
    info = await handle.info()
    assert info.status == "complete" and info.error is None
    assert [(s.function, s.status, s.after, s.result) for s in info.steps] == [
        ("add", "done", (), 3), ("plus_one", "done", (0,), 4), ("text", "done", (1,), "got 4"),
    ]  # fmt: skip
    assert info.steps[1].job_id == step_id(handle.workflow_id, 1)
    assert sorted((await _runs(redis)).values()) == [1, 1, 1]


async def test_a_group_returns_its_results_in_order(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(group([plus_one.s(i) for i in range(10)]))
    assert await handle.result(timeout_s=10) == list(range(1, 11))


async def test_a_chord_runs_its_callback_once_with_every_result(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    running_worker(ALL)  # two workers share the members
    handle = await client.enqueue_workflow(chord(group([add.s(i, i) for i in range(8)]), total.s()))
    assert await handle.result(timeout_s=10) == sum(2 * i for i in range(8))
    runs = await _runs(redis)
    assert runs[step_id(handle.workflow_id, 8)] == 1 and set(runs.values()) == {1} and len(runs) == 9


async def test_a_group_inside_a_chain_hands_its_list_on(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    flow = chain(plus_one.s(1), group([plus_one.s(), add.s(10), add.s(y=100)]), total.s(), text.s())
    handle = await client.enqueue_workflow(flow)
    assert await handle.result(timeout_s=10) == f"n={3 + 12 + 102}"
    steps = (await handle.info()).steps
    assert [s.after for s in steps] == [(), (0,), (0,), (0,), (1, 2, 3), (4,)]


async def test_a_workflow_ending_in_a_group_of_chains(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(group([chain(plus_one.s(1), plus_one.s()), text.s(5)]))
    assert await handle.result(timeout_s=10) == [3, "n=5"]


async def test_steps_wait_for_their_inputs_out_of_the_queue(client: JobClient, redis: ArqRedis) -> None:
    """No worker: only the first step is in the queue; the others are held (their job keys written)."""
    handle = await client.enqueue_workflow(chain(plus_one.s(1), plus_one.s(), plus_one.s()))
    queued = [m.decode() for m in await redis.zrange(client.queue_name, 0, -1)]
    assert queued == [step_id(handle.workflow_id, 0)]
    for i in range(3):
        assert await redis.exists(k.job_key_prefix + step_id(handle.workflow_id, i))
    assert [s.status for s in (await handle.info()).steps] == ["queued", "held", "held"]


async def test_a_step_failing_for_good_fails_the_workflow_once_naming_it(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(chain(plus_one.s(1), refuse.s(), plus_one.s(), plus_one.s()))
    with pytest.raises(WorkflowFailed, match=r"step 1 refuse\(\) .* failed for good: Permanent: no to 2") as failed:
        await handle.result(timeout_s=10)
    assert failed.value.workflow_id == handle.workflow_id
    info = await handle.info()
    assert info.status == "failed" and info.error is not None and "refuse" in info.error
    assert [s.status for s in info.steps] == ["done", "failed", "cancelled", "cancelled"]
    assert await redis.hget(state_key(handle.workflow_id), "failed_step") == b"1"
    # the held steps' jobs are gone: nothing runs them later
    assert not await redis.exists(k.job_key_prefix + step_id(handle.workflow_id, 2))
    assert set((await _runs(redis)).keys()) == {step_id(handle.workflow_id, i) for i in (0, 1)}


async def test_a_failed_member_cancels_its_running_siblings(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(chord(group([slow.s(1), slow.s(2), refuse.s(3)]), total.s()))
    with pytest.raises(WorkflowFailed, match="refuse"):
        await handle.result(timeout_s=10)

    async def settled() -> list[str] | None:
        statuses = [s.status for s in (await handle.info()).steps]
        return statuses if "running" not in statuses and "queued" not in statuses else None

    statuses = await wait_for(settled, 10, message="the running members were never cancelled")
    assert statuses[2:] == ["failed", "cancelled"] and set(statuses[:2]) <= {"aborted", "cancelled"}


async def test_on_failure_continue_lets_running_members_finish(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    flow = chord(group([add.s(1, 1), refuse.s(3), add.s(2, 2)]), total.s())
    handle = await client.enqueue_workflow(flow, on_failure="continue")
    with pytest.raises(WorkflowFailed, match="refuse"):
        await handle.result(timeout_s=10)

    async def members_done() -> list[str] | None:
        statuses = [s.status for s in (await handle.info()).steps]
        return statuses if statuses[0] == statuses[2] == "done" else None

    assert await wait_for(members_done, 10) == ["done", "failed", "done", "cancelled"]
    assert (await handle.info()).steps[2].result == 4


async def test_a_retried_step_runs_its_successor_once(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(chain(flaky_once.s(5), plus_one.s()))
    assert await handle.result(timeout_s=10) == 11
    runs = await _runs(redis)
    assert runs == {step_id(handle.workflow_id, 0): 2, step_id(handle.workflow_id, 1): 1}


async def test_a_retried_member_runs_the_fan_in_once(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(chord(group([flaky_once.s(1), plus_one.s(1), flaky_once.s(2)]), total.s()))
    assert await handle.result(timeout_s=10) == 2 + 2 + 4
    runs = await _runs(redis)
    assert [runs[step_id(handle.workflow_id, i)] for i in range(4)] == [2, 1, 2, 1]


async def test_arguments_are_validated_at_enqueue_and_nothing_is_written(client: JobClient, redis: ArqRedis) -> None:
    with pytest.raises(ArgumentsInvalid, match=r"add\(\)"):
        await client.enqueue_workflow(chain(plus_one.s(1), add.s("not a number")))  # type: ignore[call-overload]
    with pytest.raises(ArgumentsInvalid, match="previous step's result"):
        await client.enqueue_workflow(chain(plus_one.s(1), add.s(x=1, y=2)))
    with pytest.raises(ArgumentsInvalid, match="y: Field required"):
        await client.enqueue_workflow(chain(plus_one.s(1), add.s()))  # type: ignore[call-overload]
    with pytest.raises(ArgumentsInvalid):
        await client.enqueue_workflow(chain(plus_one.s(), plus_one.s()))  # the first step takes no input
    assert await redis.dbsize() == 0


async def test_options_a_workflow_does_not_honour_are_refused(client: JobClient) -> None:
    with pytest.raises(ValueError, match="defer_by is not honoured"):
        await client.enqueue_workflow(chain(plus_one.options(defer_by=5).s(1)))
    with pytest.raises(ValueError, match="one queue"):
        await client.enqueue_workflow(
            group([plus_one.options(queue_name="a").s(1), plus_one.options(queue_name="b").s(1)])
        )
    with pytest.raises(ValueError, match="one queue"):
        await client.enqueue_workflow(chain(plus_one.options(queue_name="a").s(1)), queue_name="b")
    with pytest.raises(ValueError, match="on_failure"):
        await client.enqueue_workflow(chain(plus_one.s(1)), on_failure="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must end in one step"):
        group([group([plus_one.s(1)])])


async def test_a_workflow_runs_in_the_queue_its_jobs_are_set_for(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL, queue_name="{set}")
    flow = chain(plus_one.options(queue_name="{set}").s(1), plus_one.s())
    handle = await client.enqueue_workflow(flow)
    assert handle.queue_name == "{set}" and await handle.result(timeout_s=10) == 3


async def test_a_workflow_in_a_tagged_queue_keeps_every_key_in_its_slot(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL, queue_name="{flows}")
    handle = await client.enqueue_workflow(
        chord(group([plus_one.s(1), plus_one.s(2)]), total.s()), queue_name="{flows}"
    )
    assert await handle.result(timeout_s=10) == 5
    assert handle.workflow_id.startswith("{flows}wf:")
    assert all(s.job_id.startswith("{flows}") for s in (await handle.info()).steps)


async def test_eager_mode_refuses_workflows() -> None:
    with pytest.raises(TypeError, match="does not run workflows"):
        await EagerClient().enqueue_workflow(chain(plus_one.s(1)))


async def test_signed_steps_run_and_a_copied_payload_is_refused(
    redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    """With a signing secret every step's payload is signed for its own id: one copied onto another step's id is
    refused (dead-lettered), which fails the workflow naming that step."""
    signed = JobClient(redis, Codec("s3cret"))
    handle = await signed.enqueue_workflow(chain(plus_one.s(1), plus_one.s(), plus_one.s()))
    first, second = (k.job_key_prefix + step_id(handle.workflow_id, i) for i in (0, 1))
    await redis.set(second, await redis.get(first))  # step 1 now holds step 0's payload (signed for step 0's id)
    running_worker(ALL, codec=Codec("s3cret"))
    with pytest.raises(WorkflowFailed, match=r"step 1 plus_one\(\) \(job .*:1\) failed for good: DeserializationError"):
        await handle.result(timeout_s=10)
    ok = await signed.enqueue_workflow(chain(plus_one.s(1), plus_one.s()))
    assert await ok.result(timeout_s=10) == 3
