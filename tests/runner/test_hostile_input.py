"""Hostile input, generated: random bytes and JSON as payloads, garbage ids in the queue itself.

None of it may stop the worker; each entry ends with a result or in the dead-letter queue (an id with no job
behind it is recorded as expired), and good jobs keep flowing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from arq.connections import ArqRedis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.runner import JobClient
from src.runner import constants as k
from src.runner.worker import Worker
from tests.sample_jobs import add, echo, move
from tests.waiting import wait_for

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
envelopes = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 2, "1", None]), "d": st.one_of(json_values, st.fixed_dictionaries({
        "t": st.none() | st.integers(-5, 5), "f": st.sampled_from(["add", "move", "echo", "nope", ""]),
        "a": st.lists(json_values, max_size=3),
        "k": st.dictionaries(st.sampled_from(["a", "b", "text", "x"]), json_values),
        "et": st.integers(0, 2**40),
    }))},
)  # fmt: skip
payloads = st.one_of(st.binary(max_size=200), json_values.map(orjson.dumps), envelopes.map(orjson.dumps))
job_ids = st.one_of(st.binary(min_size=1, max_size=24), st.text(min_size=1, max_size=24).map(str.encode))
entries = st.lists(
    st.tuples(job_ids, st.one_of(st.none(), payloads)), min_size=5, max_size=30, unique_by=lambda e: e[0]
)


_worker_started: set[int] = set()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=entries)
async def test_garbage_never_stops_the_worker(
    batch: list[tuple[bytes, bytes | None]],
    redis: ArqRedis,
    client: JobClient,
    running_worker: Callable[..., Worker],
) -> None:
    await redis.flushdb()
    if id(running_worker) not in _worker_started:  # one worker for all the examples of this test run
        # entries go straight into the queue at score 1, behind the worker's claim cursor, with no wake-up token:
        # they are found at the periodic rescan, every third of a lease
        running_worker([add, move, echo], max_jobs=10, lease_s=0.6)
        _worker_started.add(id(running_worker))
    async with redis.pipeline(transaction=False) as pipe:
        for raw_id, payload in batch:
            if payload is not None:  # None: an id in the queue with no job behind it
                pipe.set(k.job_key_prefix.encode() + raw_id, payload)
            pipe.zadd(k.default_queue_name, {raw_id: 1})
        await pipe.execute()
    await _until_queue_empty(redis)
    for raw_id, _ in batch:
        ended = await redis.exists(k.result_key_prefix.encode() + raw_id) or await redis.zscore(
            k.DLQ_KEY_PREFIX + k.default_queue_name, raw_id
        )
        assert ended, f"{raw_id!r} neither has a result nor is a dead letter"
    assert await (await client.enqueue(add, 1)).result(timeout_s=5) == 2


async def _until_queue_empty(redis: ArqRedis) -> None:
    async def empty() -> bool:
        return not await redis.zcard(k.default_queue_name)

    try:
        await wait_for(empty, message="an empty queue")
    except AssertionError:
        left: Any = await redis.zrange(k.default_queue_name, 0, -1)
        raise AssertionError(f"still queued: {left!r}") from None
