from __future__ import annotations

import asyncio
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from src.runner.lean_pool import direct_pool, make_lean
from src.runner.scripts import Script
from tests.waiting import wait_for


def _connections(redis: ArqRedis) -> list[object]:
    pool = redis.connection_pool
    return [*pool._available_connections, *pool._in_use_connections]


def _stream_has_news(redis: ArqRedis) -> bool:
    """The idle connection's stream holds what the server sent after the last reply (data or its end)."""
    [connection] = redis.connection_pool._available_connections
    stream = connection._reader
    return stream is None or bool(stream._buffer) or stream.at_eof()  # type: ignore[attr-defined]


async def test_hiredis_packed_commands_behave_the_same(redis: ArqRedis) -> None:
    await redis.ping()  # the pool has a connection before it is made lean, as after create_pool
    make_lean(redis)
    assert type(redis.connection_pool).__name__ == "LeanConnectionPool"
    assert redis.connection_pool.connection_class.__name__ == "HiredisConnection"
    connections = _connections(redis)
    assert connections and all(type(c).__name__ == "HiredisConnection" for c in connections)
    await redis.set("k y", b"a value with spaces \x00\xff")
    assert await redis.get("k y") == b"a value with spaces \x00\xff"
    assert isinstance(await redis.client_id(), int)  # "CLIENT ID": subcommand in the name
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr("n")
        pipe.incrbyfloat("f", 1.5)
        assert await pipe.execute() == [1, 1.5]
    make_lean(redis)  # idempotent
    assert redis.connection_pool.connection_class.__name__ == "HiredisConnection"


async def test_a_connection_the_server_closed_is_replaced(redis: ArqRedis) -> None:
    make_lean(redis)
    old_id = await redis.client_id()
    await redis.execute_command("CLIENT", "KILL", "ID", old_id, "SKIPME", "no")  # type: ignore[no-untyped-call]
    await wait_for(lambda: _stream_has_news(redis), message="the close reached the stream")
    assert await redis.incr("after-kill") == 1
    assert await redis.client_id() != old_id


async def test_a_connection_with_an_unread_reply_is_replaced(redis: ArqRedis) -> None:
    make_lean(redis)
    old_id = await redis.client_id()
    pool = redis.connection_pool
    connection = await pool.get_connection()
    await connection.send_command("GET", "nothing-here")  # a reply nobody reads
    await pool.release(connection)
    await wait_for(lambda: _stream_has_news(redis), message="the reply reached the stream")
    assert await redis.set("k", "v") is True  # not the stale reply of the GET (None)
    assert await redis.get("k") == b"v"
    assert await redis.client_id() != old_id  # the pool reconnected


# the direct path of scripts (lean_pool.execute) --------------------------------------------------------------------
def _lean(redis_settings: RedisSettings, **options: Any) -> Redis:
    redis = Redis(host=str(redis_settings.host), port=redis_settings.port, **options)
    make_lean(redis)
    return redis


async def test_a_script_goes_the_direct_way_and_is_loaded_again_after_a_flush(
    redis_settings: RedisSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = _lean(redis_settings, socket_timeout=5.0)
    try:
        assert direct_pool(redis) is redis.connection_pool
        echo = Script(redis, "return {KEYS[1], ARGV[1], #ARGV}")

        async def not_this_way(*args: object) -> None:
            raise AssertionError("the script went through Redis.evalsha")

        monkeypatch.setattr(redis, "evalsha", not_this_way)
        assert await echo(keys=["k"], args=["a", 2]) == [b"k", b"a", 2]
        await redis.script_flush()  # as a restarted server: it knows no script
        assert await echo(keys=["k"], args=["b", 3]) == [b"k", b"b", 2]
        assert not redis.connection_pool._in_use_connections
    finally:
        await redis.aclose()


async def test_an_error_reply_is_raised_and_keeps_the_connection(redis_settings: RedisSettings) -> None:
    redis = _lean(redis_settings, socket_timeout=5.0)
    try:
        refuse = Script(redis, "return redis.error_reply('refused here')")
        before = await redis.client_id()
        with pytest.raises(ResponseError, match="refused here"):
            await refuse()
        assert await redis.client_id() == before  # not closed: the reply was read whole
        assert not redis.connection_pool._in_use_connections
    finally:
        await redis.aclose()


async def test_a_timeout_or_a_cancel_closes_the_connection_and_returns_it(redis_settings: RedisSettings) -> None:
    redis = _lean(redis_settings, socket_timeout=0.2)
    other = _lean(redis_settings)
    try:
        one = Script(redis, "return 1")
        assert await one() == 1
        [connection] = redis.connection_pool._available_connections
        await other.execute_command("CLIENT", "PAUSE", 1500, "ALL")  # type: ignore[no-untyped-call]
        with pytest.raises(RedisTimeoutError):
            await one()
        assert not connection.is_connected and not redis.connection_pool._in_use_connections
        waiting = asyncio.create_task(one())
        await wait_for(lambda: bool(redis.connection_pool._in_use_connections), message="the call sent")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        pool = redis.connection_pool
        assert not pool._in_use_connections and not any(c.is_connected for c in pool._available_connections)
        await wait_for(lambda: _answers(one), timeout_s=10, message="the pause ended")
    finally:
        await redis.aclose()
        await other.aclose()


async def _answers(one: Script) -> bool:
    try:
        return bool(await one() == 1)
    except RedisTimeoutError:
        return False


async def test_options_only_redis_py_keeps_take_its_path(redis_settings: RedisSettings) -> None:
    plain = Redis(host=str(redis_settings.host), port=redis_settings.port)
    retrying = _lean(redis_settings, retry_on_timeout=True)
    single = _lean(redis_settings, single_connection_client=True)
    blocking = Redis.from_pool(BlockingConnectionPool(host=redis_settings.host, port=redis_settings.port))
    make_lean(blocking)
    try:
        await single.ping()
        for redis in (plain, retrying, single, blocking):
            assert direct_pool(redis) is None
            assert await Script(redis, "return 7")() == 7  # redis-py's own way
    finally:
        for redis in (plain, retrying, single, blocking):
            await redis.aclose()
