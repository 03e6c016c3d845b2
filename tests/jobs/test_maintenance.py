from __future__ import annotations

import orjson
import pytest
from arq.connections import ArqRedis

from src.jobs.maintenance import STATS_KEY_PREFIX, QueueHealth, record_queue_health
from src.runner import EagerClient, JobClient
from tests.sample_jobs import add


async def test_snapshot_counts_due_and_deferred_and_lag(
    env: pytest.MonkeyPatch, redis: ArqRedis, client: JobClient, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        await client.enqueue(add.options(defer_by=-120), 1)  # due two minutes ago
    await client.enqueue(add.options(defer_by=600), 1)
    health = await (await EagerClient(redis=redis).enqueue(record_queue_health)).result()
    assert isinstance(health, QueueHealth)
    assert (health.due, health.deferred) == (3, 1)
    assert 119 < health.lag_s < 130
    assert "lags" in caplog.text  # over the 60 s default threshold
    stored = orjson.loads(await redis.get(STATS_KEY_PREFIX + "arq:queue"))
    assert stored["due"] == 3


async def test_empty_queue_has_no_lag(env: pytest.MonkeyPatch, redis: ArqRedis) -> None:
    health = await (await EagerClient(redis=redis).enqueue(record_queue_health)).result()
    assert (health.due, health.deferred, health.lag_s) == (0, 0, 0.0)
