"""Server-side Lua steps, loaded once from ``scripts/*.lua`` and run by SHA (EVALSHA, EVAL on a cold cache).

Key prefixes reach the scripts from ``constants.py``: each script gets a one-line prelude declaring them as Lua
locals (``JOB_KEY_PREFIX`` …), right after its ``#!lua`` line. That line declares the script's flags, so that on a
Redis Cluster the server refuses a script touching keys of two slots instead of running it until a reshard.
A line ``--#include <file>.lua`` is replaced by that file's text: Lua shared by two scripts (``workflow_step.lua``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.typing import EncodableT, KeyT

from . import constants as k
from .lean_pool import direct_pool, execute

#: the prefixes a script may build keys from (the key of a job it found, of an id it was given)
_PREFIXES = {
    "JOB_KEY_PREFIX": k.job_key_prefix,
    "IN_PROGRESS_KEY_PREFIX": k.in_progress_key_prefix,
    "RETRY_KEY_PREFIX": k.retry_key_prefix,
    "RESULT_KEY_PREFIX": k.result_key_prefix,
    "WORKER_LIST_PREFIX": k.WORKER_LIST_PREFIX,
    "TRY_ERRORS_KEY_PREFIX": k.TRY_ERRORS_KEY_PREFIX,
    "DLQ_ENTRY_KEY_PREFIX": k.DLQ_ENTRY_KEY_PREFIX,
    "CRON_STATE_KEY_PREFIX": k.CRON_STATE_KEY_PREFIX,
    "WORKFLOW_KEY_PREFIX": k.WORKFLOW_KEY_PREFIX,
    "LIMITS_KEY_PREFIX": k.LIMITS_KEY_PREFIX,
    "LIMIT_OF_KEY_PREFIX": k.LIMIT_OF_KEY_PREFIX,
    "LIMIT_RUNNING_KEY_PREFIX": k.LIMIT_RUNNING_KEY_PREFIX,
    "LIMIT_HELD_KEY_PREFIX": k.LIMIT_HELD_KEY_PREFIX,
    "LIMIT_RATE_KEY_PREFIX": k.LIMIT_RATE_KEY_PREFIX,
    "LIMIT_BUCKETS_KEY_PREFIX": k.LIMIT_BUCKETS_KEY_PREFIX,
    "LIMIT_WAITING_KEY_PREFIX": k.LIMIT_WAITING_KEY_PREFIX,
    "REWIND_KEY_PREFIX": k.REWIND_KEY_PREFIX,
}
#: numbers the scripts share with the Python side
_NUMBERS = {
    "HELD_SCORE_MS": k.HELD_SCORE_MS,
    "MAX_WAKE_TOKENS": k.MAX_WAKE_TOKENS,
    "LIMIT_SWEEP_BUCKETS": k.LIMIT_SWEEP_BUCKETS,
}
#: a script line that is replaced by ``scripts/<name>.lua`` (shared Lua functions)
_INCLUDE = "--#include "


def _prelude() -> str:
    for name, prefix in _PREFIXES.items():
        # a brace would hash keys by the prefix instead of the id's tag; a quote would end the Lua string
        if any(c in prefix for c in "{}'\\\n"):
            raise ValueError(f"{name} {prefix!r} may not contain braces, quotes or backslashes")
    names = [*_PREFIXES, *_NUMBERS]
    values = [*(repr(p) for p in _PREFIXES.values()), *(str(n) for n in _NUMBERS.values())]
    return f"local {', '.join(names)} = {', '.join(values)}\n"


#: the text of every script used so far by its SHA1, for a node that must be given it again (``cluster_pool.py``)
_BY_SHA: dict[str, str] = {}


def source_by_sha(sha: str) -> str | None:
    """The text of a script used in this process whose SHA1 is ``sha``."""
    return _BY_SHA.get(sha)


@cache
def source(name: str) -> str:
    """The text of ``scripts/<name>.lua`` as sent to Redis: its ``#!lua`` line, the prelude, its body (with the files
    it includes)."""
    shebang, _, body = files(__package__).joinpath("scripts", f"{name}.lua").read_text().partition("\n")
    if not shebang.startswith("#!lua"):
        raise ValueError(f"scripts/{name}.lua must begin with a '#!lua' line declaring its flags")
    lines = [
        _library(line.removeprefix(_INCLUDE).strip()) if line.startswith(_INCLUDE) else line
        for line in body.split("\n")
    ]
    text = f"{shebang}\n{_prelude()}{chr(10).join(lines)}"
    _BY_SHA[hashlib.sha1(text.encode()).hexdigest()] = text
    return text


def _library(name: str) -> str:
    """The body of ``scripts/<name>.lua``, a library of local functions included by other scripts."""
    text = files(__package__).joinpath("scripts", f"{name}.lua").read_text()
    return "\n".join(line for line in text.split("\n") if not line.startswith("#!lua"))


class Script(AsyncScript):
    """redis-py's script, sent by :func:`lean_pool.execute` where the client's pool allows it (``direct_pool``):
    the same EVALSHA, and the script loaded again on a server that does not know it."""

    async def __call__(
        self, keys: Sequence[KeyT] | None = None, args: Iterable[EncodableT] | None = None, client: Any = None
    ) -> Any:
        pool = direct_pool(self.registered_client) if client is None else None
        if pool is None:  # a pipeline, a cluster, or a pool with options redis-py's path keeps
            return await super().__call__(keys, args, client)
        keys, args = keys or (), args or ()
        try:
            return await execute(pool, "EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:  # a restarted or flushed server
            self.sha = await self.registered_client.script_load(self.script)
            return await execute(pool, "EVALSHA", self.sha, len(keys), *keys, *args)


def script(redis: Redis, name: str) -> AsyncScript:
    """The script ``scripts/<name>.lua`` bound to ``redis``."""
    return Script(redis, source(name))
