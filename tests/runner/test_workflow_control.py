"""Workflows under an operator's hand and at their edges: aborting a queued or held step fails the workflow once (as
a step failing for good does), a dead step's requeue is refused, a step's result is checked for size, written or
refused, and signed like any result, a step is recorded once (a late outcome after a lease passed on, a job run
under a done step's id), a held step's expiry fails the workflow, a fan-out of thousands is written, and an option
a workflow cannot honour is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job

from src.runner import (
    Codec,
    DeadLetters,
    JobClient,
    RequeueRefused,
    WorkflowFailed,
    chain,
    chord,
    group,
    workflow_steps,
)
from src.runner import constants as k
from src.runner.claim import Claimed, Claimer
from src.runner.finish import Finisher, Outcome
from src.runner.worker import Worker
from src.runner.workflow_ids import state_key, step_id
from tests.waiting import wait_for
from tests.workflow_jobs import ALL, add, blob, length, plus_one, refuse, slow, too_big_an_int, total, unkept

pytestmark = pytest.mark.timeout(30)


async def _statuses(client: JobClient, workflow_id: str) -> list[str]:
    fields = await client.redis.hgetall(state_key(workflow_id))
    return [fields[f"st:{i}".encode()].decode() for i in range(int(fields[b"steps"]))]


@pytest.mark.parametrize("aborted", [0, 1], ids=["queued", "held"])
async def test_aborting_a_step_by_hand_fails_its_workflow_once(
    client: JobClient, redis: ArqRedis, aborted: int
) -> None:
    """No worker: step 0 is queued, steps 1 and 2 are held. Aborting either fails the workflow at once, naming it;
    nothing of it is left to run."""
    handle = await client.enqueue_workflow(chain(plus_one.s(1), plus_one.s(), plus_one.s()))
    target = step_id(handle.workflow_id, aborted)
    assert await client.abort(target, timeout_s=5) is True
    with pytest.raises(WorkflowFailed, match=rf"step {aborted} plus_one\(\) \(job .*:{aborted}\) was aborted"):
        await handle.result(timeout_s=5)
    expected = ["aborted", "cancelled", "cancelled"] if aborted == 0 else ["cancelled", "aborted", "cancelled"]
    assert await _statuses(client, handle.workflow_id) == expected
    assert await redis.zcard(client.queue_name) == 0
    for i in range(3):
        assert not await redis.exists(k.job_key_prefix + step_id(handle.workflow_id, i))
    error = await redis.hget(state_key(handle.workflow_id), "error")
    assert await client.abort(target, timeout_s=1) is False  # once: a second abort finds nothing
    assert await redis.hget(state_key(handle.workflow_id), "error") == error


async def test_aborting_a_held_step_of_a_running_workflow(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    """The fan-in of a chord is held while its members run; aborting it fails the workflow once the abort is
    written, and the members that finish later advance nothing."""
    handle = await client.enqueue_workflow(chord(group([plus_one.s(1), plus_one.s(2)]), total.s()))
    fan_in = step_id(handle.workflow_id, 2)
    assert await client.abort(fan_in, timeout_s=5) is True
    running_worker(ALL)
    with pytest.raises(WorkflowFailed, match=r"step 2 total\(\) .* was aborted"):
        await handle.result(timeout_s=5)
    assert not await redis.exists(k.job_key_prefix + fan_in)
    assert not await redis.hexists("runs", fan_in)


async def test_aborting_a_job_outside_any_workflow_is_unchanged(client: JobClient, redis: ArqRedis) -> None:
    handle = await client.enqueue(plus_one, 1)
    assert await handle.abort(timeout_s=5) is True
    assert await client.abort("wf:" + "0" * 32 + ":1", timeout_s=1) is False  # looks like a step, is nothing


async def test_requeueing_a_dead_step_is_refused_and_it_stays_dead(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(chain(refuse.s(1), plus_one.s()))
    with pytest.raises(WorkflowFailed):
        await handle.result(timeout_s=10)
    dead = DeadLetters(redis, client.queue_name)
    first = step_id(handle.workflow_id, 0)
    await wait_for(lambda: dead.get(first), 5)
    with pytest.raises(RequeueRefused, match=rf"{handle.workflow_id}.*failed.*enqueue the workflow again"):
        await dead.requeue(first)
    assert await dead.requeue_all() == 0  # a bulk requeue leaves it too
    assert await dead.get(first) is not None and await redis.zcard(client.queue_name) == 0
    assert await handle.status() == "failed"


async def test_a_step_result_over_the_limit_fails_the_workflow_even_when_not_kept(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    """``blob`` keeps no job result (keep_result_s=0): its value goes only into the workflow's state, and is held to
    the same max_result_bytes as a kept result."""
    running_worker(ALL, max_result_bytes=1000)
    ok = await client.enqueue_workflow(chain(blob.s(100), length.s()))
    assert await ok.result(timeout_s=10) == 100
    handle = await client.enqueue_workflow(chain(blob.s(5000), length.s()))
    with pytest.raises(WorkflowFailed, match=r"step 0 blob\(\) .* failed for good: PayloadTooLarge: result of blob"):
        await handle.result(timeout_s=10)
    assert await redis.hget(state_key(handle.workflow_id), "r:0") is None


async def test_a_step_priority_is_refused(client: JobClient, redis: ArqRedis) -> None:
    """A step is queued by the finish script when its inputs are done, at no priority: refused, not ignored."""
    with pytest.raises(ValueError, match=r"step 1 plus_one\(\): priority is not honoured in a workflow"):
        await client.enqueue_workflow(chain(plus_one.s(1), plus_one.options(priority=3).s()))
    assert await redis.dbsize() == 0


async def test_a_signed_step_refuses_an_input_altered_in_the_workflow_state(
    redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    """With a signing secret a step's result is signed for its step: an input written into the state by anyone
    else (here: as if step 0 had returned 100) is refused, which fails the workflow naming the step that read it."""
    signed = JobClient(redis, Codec("s3cret"))
    handle = await signed.enqueue_workflow(chain(plus_one.s(1), plus_one.s(), plus_one.s()))
    first, second = step_id(handle.workflow_id, 0), step_id(handle.workflow_id, 1)
    # step 0 "done" by hand: its result forged, step 1 queued as the finish script would
    await redis.hset(state_key(handle.workflow_id), mapping={"r:0": b"100", "st:0": "done", "p:1": 0, "st:1": "queued"})
    await redis.zrem(signed.queue_name, first)
    await redis.delete(k.job_key_prefix + first)
    await redis.zadd(signed.queue_name, {second: 0})
    running_worker(ALL, codec=Codec("s3cret"))
    with pytest.raises(WorkflowFailed, match=r"step 1 plus_one\(\) .* failed for good: InputRefused: .*step 0"):
        await handle.result(timeout_s=10)
    assert not await redis.hexists("runs", second)

    ok = await signed.enqueue_workflow(chain(plus_one.s(1), plus_one.s()))
    assert await ok.result(timeout_s=10) == 3
    assert (await ok.info()).steps[0].result == 2


async def test_a_group_of_thousands_of_members_fans_in(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """The enqueue script writes the state in slices: a Lua call takes a few thousand values at once at most."""
    members = 2500
    handle = await client.enqueue_workflow(chord(group([plus_one.s(i) for i in range(members)]), total.s()))
    running_worker(ALL, max_jobs=200)
    assert await handle.result(timeout_s=25) == sum(range(1, members + 1))


async def test_a_done_step_is_not_advanced_again_by_a_job_of_its_id(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    """A step's final outcome is recorded once. Once step 0 is done (its result not kept as a job result, so its
    id is free again), a job enqueued under its id by arq's own client runs, but records and advances nothing: the
    fan-in still waits for step 1."""
    running_worker(ALL)
    handle = await client.enqueue_workflow(chord(group([unkept.s(1), slow.s(2)]), total.s()))
    first, fan_in = step_id(handle.workflow_id, 0), step_id(handle.workflow_id, 2)

    async def step_0_done_and_step_1_running() -> bool:
        statuses = [s.status for s in (await handle.info()).steps]
        return statuses == ["done", "running", "held"] and bool(await redis.llen("slow:started"))

    await wait_for(step_0_done_and_step_1_running, 10)
    assert await redis.enqueue_job("unkept", x=5, _job_id=first) is not None

    async def ran_again() -> bool:
        return await redis.hget("runs", first) == b"2" and not await redis.exists(k.job_key_prefix + first)

    await wait_for(ran_again, 10, message="the job under step 0's id never ran")
    state = await redis.hgetall(state_key(handle.workflow_id))
    assert (state[b"st:2"], state[b"p:2"]) == (b"held", b"1")
    assert await redis.zscore(client.queue_name, fan_in) is None
    assert (await handle.info()).steps[0].result == 100
    assert await client.abort(step_id(handle.workflow_id, 1), timeout_s=10)
    with pytest.raises(WorkflowFailed, match=r"step 1 slow\(\) .* was aborted"):
        await handle.result(timeout_s=5)


async def test_a_held_step_whose_job_expired_fails_the_workflow_naming_it(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    """A held step's job key lives for its ``expires`` from the workflow's enqueue: gone by the time its input is
    done, it fails the workflow (it is dead-lettered as expired) instead of leaving it waiting."""
    handle = await client.enqueue_workflow(chain(plus_one.s(1), plus_one.options(expires=0.2).s(), plus_one.s()))
    second = step_id(handle.workflow_id, 1)

    async def expired() -> bool:
        return not await redis.exists(k.job_key_prefix + second)

    await wait_for(expired, 5)
    running_worker(ALL)
    with pytest.raises(
        WorkflowFailed, match=r"step 1 plus_one\(\) .* failed for good: JobExecutionFailed: job expired"
    ):
        await handle.result(timeout_s=10)
    assert [s.status for s in (await handle.info()).steps] == ["done", "failed", "cancelled"]


async def test_a_step_result_that_cannot_be_written_fails_the_workflow(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """A result its job's annotation allows but JSON cannot carry here (an int over 64 bits) fails the step for
    good, naming why, instead of leaving the step running with no outcome."""
    running_worker(ALL)
    handle = await client.enqueue_workflow(chain(too_big_an_int.s(1), plus_one.s()))
    with pytest.raises(
        WorkflowFailed, match=r"step 0 too_big_an_int\(\) .* failed for good: PayloadError: cannot encode"
    ):
        await handle.result(timeout_s=10)


async def test_a_step_whose_lease_passed_to_another_worker_is_recorded_once(
    client: JobClient, redis: ArqRedis, codec: Codec
) -> None:
    """Worker A claims a member of a chord and stalls past its lease; worker B takes the member over and finishes
    it with the other member, which queues the fan-in. A's late outcome (another value) changes nothing: the
    member's result is B's, the fan-in was queued once and its inputs count stays at zero."""
    handle = await client.enqueue_workflow(chord(group([add.s(1, 1), add.s(2, 2)]), total.s()))
    queue, ids = client.queue_name, [step_id(handle.workflow_id, i) for i in range(3)]
    claimers = {w: Claimer(redis, queue, w, lease_ms=200, idle_ttl_ms=1000) for w in ("a", "b")}
    finishers = {w: Finisher(redis, queue, w, dlq_retention_ms=60_000) for w in ("a", "b")}

    def done(claimed: Claimed, value: int) -> Outcome:
        step = workflow_steps.encode_result(codec, claimed.job_id, queue, value)
        return Outcome(claimed.raw_id, "done", b"", 0, succeeded=True, workflow=step)

    [stalled] = (await claimers["a"].claim(1)).jobs
    assert stalled.job_id == ids[0]

    async def lease_gone() -> bool:
        return not await redis.exists(k.in_progress_key_prefix + ids[0])

    await wait_for(lease_gone, 5)
    taken = (await claimers["b"].claim(5)).jobs
    assert sorted(c.job_id for c in taken) == ids[:2]
    for claimed in taken:
        finishers["b"].add(done(claimed, 2 if claimed.job_id == ids[0] else 4))
    await finishers["b"].drain()
    assert await redis.zscore(queue, ids[2]) is not None
    finishers["a"].add(done(stalled, 99))
    await finishers["a"].drain()
    state = await redis.hgetall(state_key(handle.workflow_id))
    assert (state[b"p:2"], state[b"st:2"], state[b"status"]) == (b"0", b"queued", b"running")
    assert [s.result for s in (await handle.info()).steps[:2]] == [2, 4]


async def test_arqs_own_abort_of_a_held_step_takes_effect_when_its_inputs_are_done(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    """arq's ``Job.abort()`` only flags the job; the held step is aborted when it would start."""
    handle = await client.enqueue_workflow(chain(plus_one.s(1), plus_one.s(), plus_one.s()))
    held = step_id(handle.workflow_id, 1)
    assert await Job(held, redis, _deserializer=client.codec.loads).abort(timeout=0.1) is False  # nobody ran it yet
    running_worker(ALL)
    with pytest.raises(WorkflowFailed, match=r"step 1 plus_one\(\) .* was aborted"):
        await handle.result(timeout_s=10)
    assert [s.status for s in (await handle.info()).steps] == ["done", "aborted", "cancelled"]
