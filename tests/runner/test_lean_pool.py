from __future__ import annotations

from arq.connections import ArqRedis

from src.runner.lean_pool import make_lean
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
