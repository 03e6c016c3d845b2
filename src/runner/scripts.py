"""Server-side Lua steps, loaded once from ``scripts/*.lua`` and run by SHA (EVALSHA, EVAL on a cold cache)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def _source(name: str) -> str:
    return files(__package__).joinpath("scripts", f"{name}.lua").read_text()


def script(redis: Redis, name: str) -> AsyncScript:
    """The script ``scripts/<name>.lua`` bound to ``redis``."""
    return redis.register_script(_source(name))
