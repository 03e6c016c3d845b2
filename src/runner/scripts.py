"""Server-side Lua steps, loaded once from ``scripts/*.lua`` and run by SHA (EVALSHA, EVAL on a cold cache).

Key prefixes reach the scripts from ``constants.py``: each script gets a one-line prelude declaring them as Lua
locals (``JOB_KEY_PREFIX`` …), right after its ``#!lua`` line. That line declares the script's flags, so that on a
Redis Cluster the server refuses a script touching keys of two slots instead of running it until a reshard.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from . import constants as k

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
}


def _prelude() -> str:
    for name, prefix in _PREFIXES.items():
        # a brace would hash keys by the prefix instead of the id's tag; a quote would end the Lua string
        if any(c in prefix for c in "{}'\\\n"):
            raise ValueError(f"{name} {prefix!r} may not contain braces, quotes or backslashes")
    return f"local {', '.join(_PREFIXES)} = {', '.join(repr(p) for p in _PREFIXES.values())}\n"


#: the text of every script used so far by its SHA1, for a node that must be given it again (``cluster_pool.py``)
_BY_SHA: dict[str, str] = {}


def source_by_sha(sha: str) -> str | None:
    """The text of a script used in this process whose SHA1 is ``sha``."""
    return _BY_SHA.get(sha)


@cache
def source(name: str) -> str:
    """The text of ``scripts/<name>.lua`` as sent to Redis: its ``#!lua`` line, the prelude, its body."""
    text = files(__package__).joinpath("scripts", f"{name}.lua").read_text()
    shebang, _, body = text.partition("\n")
    if not shebang.startswith("#!lua"):
        raise ValueError(f"scripts/{name}.lua must begin with a '#!lua' line declaring its flags")
    text = f"{shebang}\n{_prelude()}{body}"
    _BY_SHA[hashlib.sha1(text.encode()).hexdigest()] = text
    return text


def script(redis: Redis, name: str) -> AsyncScript:
    """The script ``scripts/<name>.lua`` bound to ``redis``."""
    return redis.register_script(source(name))
