"""``@job(redact=[...])``: the values of the named arguments are never shown — ``info()``, the result record,
dead-letter records, ``hasten inspect`` and ``hasten dlq show`` — while the job itself receives them intact."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from arq.connections import ArqRedis

from src.runner import DeadLetters, JobClient, JobContext, JobStatus, job
from src.runner import constants as k
from src.runner.redact import MASK, mask_arguments
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from tests.sample_jobs import Card, received, sign_in
from tests.test_cli import _hasten
from tests.waiting import wait_for

PASSWORD = "hunter2-very-secret"
NUMBER = "4111111111111111"


def test_mask_arguments_replaces_paths_and_leaves_the_rest() -> None:
    kwargs: dict[str, Any] = {
        "password": "p",
        "card": {"holder": "Ann", "number": "1"},
        "cards": [{"number": "2"}, {"x": 1}],
    }
    masked = mask_arguments(kwargs, ["password", "card.number", "cards.number", "missing", "card.missing.deep"])
    assert masked == {
        "password": MASK, "card": {"holder": "Ann", "number": MASK}, "cards": [{"number": MASK}, {"x": 1}],
    }  # fmt: skip
    assert kwargs["password"] == "p" and kwargs["card"]["number"] == "1"  # a copy: the original is untouched


def test_redact_must_name_a_parameter() -> None:
    async def f(ctx: JobContext, token: str) -> None: ...

    with pytest.raises(TypeError, match="names no parameter"):
        job(redact=["tokn"])(f)
    with pytest.raises(TypeError, match="list of argument names"):
        job(redact="token")(f)


async def test_queued_job_shows_masked_arguments_while_its_payload_keeps_them(
    client: JobClient, redis: ArqRedis, redis_server: RedisServer
) -> None:
    handle = await client.enqueue(sign_in.options(defer_by=600), "ann", PASSWORD, Card(holder="Ann", number=NUMBER))
    info = await handle.info()
    assert info.kwargs == {"user": "ann", "password": MASK, "card": {"holder": "Ann", "number": MASK}, "fail": False}
    payload = await redis.get(k.job_key_prefix + handle.job_id)
    assert PASSWORD.encode() in payload and NUMBER.encode() in payload
    # the CLI never imported the test's job: the paths travel in the payload
    done = await asyncio.to_thread(_hasten, redis_server.url, "inspect", handle.job_id, "--json")
    assert done.returncode == 0, done.stderr
    assert MASK in done.stdout and "ann" in done.stdout
    assert PASSWORD not in done.stdout and NUMBER not in done.stdout


async def test_the_job_receives_its_arguments_and_its_result_record_hides_them(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker]
) -> None:
    received.clear()
    running_worker([sign_in])
    handle = await client.enqueue(sign_in, "ann", PASSWORD, Card(holder="Ann", number=NUMBER))
    assert await handle.result(timeout_s=10) == "ann"
    assert received == [(PASSWORD, NUMBER)]
    info = await handle.info()
    assert info.status == JobStatus.complete
    assert info.kwargs["password"] == MASK and info.kwargs["card"] == {"holder": "Ann", "number": MASK}
    stored = await redis.get(k.result_key_prefix + handle.job_id)
    assert PASSWORD.encode() not in stored and NUMBER.encode() not in stored


async def test_dead_letter_record_and_dlq_show_hide_them(
    client: JobClient, redis: ArqRedis, redis_server: RedisServer, running_worker: Callable[..., Worker]
) -> None:
    received.clear()
    running_worker([sign_in])
    handle = await client.enqueue(sign_in, "ann", PASSWORD, Card(holder="Ann", number=NUMBER), fail=True)
    dlq = DeadLetters(redis)
    dead = await wait_for(lambda: dlq.get(handle.job_id), message="the job in the dead-letter queue")
    assert received == [(PASSWORD, NUMBER)]
    assert dead.kwargs == {"user": "ann", "password": MASK, "card": {"holder": "Ann", "number": MASK}, "fail": True}
    raw = await redis.get(k.DLQ_ENTRY_KEY_PREFIX + handle.job_id)
    assert PASSWORD.encode() not in raw and NUMBER.encode() not in raw
    for args in (("dlq", "show", handle.job_id), ("dlq", "show", handle.job_id, "--json"), ("dlq", "list")):
        done = await asyncio.to_thread(_hasten, redis_server.url, *args)
        assert done.returncode == 0, done.stderr
        assert PASSWORD not in done.stdout and NUMBER not in done.stdout
    # requeue runs it with the arguments intact
    received.clear()
    assert await dlq.requeue(handle.job_id)
    await wait_for(lambda: received == [(PASSWORD, NUMBER)], message="the requeued job ran with its arguments")
