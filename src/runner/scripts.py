"""Server-side Lua steps, loaded once from ``scripts/*.lua`` and run by SHA (EVALSHA, EVAL on a cold cache).

Key prefixes reach the scripts from ``constants.py``: each script gets a one-line prelude declaring them as Lua
locals (``JOB_KEY_PREFIX`` …), right after its ``#!lua`` line. That line declares the script's flags, so that on a
Redis Cluster the server refuses a script touching keys of two slots instead of running it until a reshard.
A line ``--#include <file>.lua`` is replaced by that file's text: Lua shared by two scripts (``workflow_step.lua``).
"""

from __future__ import annotations

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
    "WORKFLOW_KEY_PREFIX": k.WORKFLOW_KEY_PREFIX,
}


def _prelude() -> str:
    for name, prefix in _PREFIXES.items():
        # a brace would hash keys by the prefix instead of the id's tag; a quote would end the Lua string
        if any(c in prefix for c in "{}'\\\n"):
            raise ValueError(f"{name} {prefix!r} may not contain braces, quotes or backslashes")
    return f"local {', '.join(_PREFIXES)} = {', '.join(repr(p) for p in _PREFIXES.values())}\n"


_INCLUDE = "--#include "


def _read(file: str) -> str:
    return files(__package__).joinpath("scripts", file).read_text()


def _with_includes(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(_read(line.removeprefix(_INCLUDE).strip()) if line.startswith(_INCLUDE) else line for line in lines)


@cache
def source(name: str) -> str:
    """The text of ``scripts/<name>.lua`` as sent to Redis: its ``#!lua`` line, the prelude, its body (with the files
    it includes)."""
    shebang, _, body = _read(f"{name}.lua").partition("\n")
    if not shebang.startswith("#!lua"):
        raise ValueError(f"scripts/{name}.lua must begin with a '#!lua' line declaring its flags")
    return f"{shebang}\n{_prelude()}{_with_includes(body)}"


def script(redis: Redis, name: str) -> AsyncScript:
    """The script ``scripts/<name>.lua`` bound to ``redis``."""
    return redis.register_script(source(name))
