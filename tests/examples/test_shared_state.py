"""examples/shared_state.py: typed jobs reach what on_startup made, on our worker, a stock arq worker and eagerly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from arq.connections import ArqRedis
from arq.worker import Worker as ArqWorker

from examples.shared_state import AppState, Inventory, WorkerSettings, reserve
from src.runner import Codec, EagerClient, JobClient, JobFailed
from src.runner.worker import Worker
from tests.conftest import TEST_POLL_DELAY_S


async def test_on_our_worker(client: JobClient, running_worker: Callable[..., Worker]) -> None:
    worker = running_worker(list(WorkerSettings.functions), on_startup=WorkerSettings.on_startup)
    assert await (await client.enqueue(reserve, "apple", 2)).result(timeout_s=5) == 1
    assert await (await client.enqueue(reserve, "apple", 1)).result(timeout_s=5) == 0
    assert len(worker.ctx["state"].notes) == 2


async def test_on_a_stock_arq_worker(redis: ArqRedis, client: JobClient, codec: Codec) -> None:
    stock = ArqWorker(
        [reserve.arq_function()], redis_pool=redis, burst=True, poll_delay=TEST_POLL_DELAY_S, handle_signals=False,
        job_serializer=codec.dumps, job_deserializer=codec.loads, on_startup=WorkerSettings.on_startup,
    )  # fmt: skip
    handle = await client.enqueue(reserve, "apple", 1)
    await stock.main()
    assert await handle.result(timeout_s=1) == 2


async def test_eagerly() -> None:
    state = AppState(inventory=Inventory())
    eager = EagerClient(state=state)
    assert await (await eager.enqueue(reserve, "pear", 2)).result() == -2
    assert state.notes


async def test_without_state_the_job_says_what_is_missing(
    running_worker: Callable[..., Worker], client: JobClient
) -> None:
    running_worker([reserve])
    with pytest.raises(JobFailed, match=r'ctx\["state"\]'):
        await (await client.enqueue(reserve, "apple", 1)).result(timeout_s=5)
