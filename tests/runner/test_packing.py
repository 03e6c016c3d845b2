from __future__ import annotations

from arq.connections import ArqRedis

from src.runner.packing import use_hiredis_packing


async def test_hiredis_packed_commands_behave_the_same(redis: ArqRedis) -> None:
    use_hiredis_packing(redis)
    await redis.connection_pool.disconnect()  # new connections use the packing class
    assert redis.connection_pool.connection_class.__name__ == "HiredisConnection"
    await redis.set("k y", b"a value with spaces \x00\xff")
    assert await redis.get("k y") == b"a value with spaces \x00\xff"
    assert isinstance(await redis.client_id(), int)  # "CLIENT ID": subcommand in the name
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr("n")
        pipe.incrbyfloat("f", 1.5)
        assert await pipe.execute() == [1, 1.5]
    use_hiredis_packing(redis)  # idempotent
    assert redis.connection_pool.connection_class.__name__ == "HiredisConnection"
