"""Concurrency and rate limits per function, across all workers of a queue (``@job(max_concurrency=…,
rate_limit=…, concurrency_key=…)``).

The limits live in Redis, per queue (``jobs:limits:<queue>``): a worker writes its functions' declared limits at
start, without overwriting a value changed at run time (``hasten limits set``), and every claim reads them. A job of
a limited function carries a side entry written by the enqueue (its function and key); the claim script admits it
or, over the limit, holds it aside (``scripts/limits_lib.lua``): taken out of reach in the queue, listed in its
bucket's held set in order, promoted back by the finish script when a slot frees — no worker slot held, no try spent,
nothing polled. Over its rate, a job is put back due at the start its rate reserves for it (GCRA, no burst). A slot
whose job's lease ended without an outcome (a killed worker) comes back at the claim that next looks at its bucket.

Jobs without a side entry (a function that declares no limit, a stock arq client's enqueue) are not limited: a
limit can be changed at run time only for a function that declares one in its ``@job``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel
from redis.asyncio import Redis

from . import constants as k
from .scripts import script

__all__ = ["Limit", "LimitRow", "Rate", "declare_limits", "limit_rows", "parse_rate", "set_limit"]

_PERIODS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts per ``period_ms``, evenly spaced (``period_ms / count`` apart)."""

    count: int
    period_ms: int

    def __str__(self) -> str:
        for unit, ms in reversed(_PERIODS_MS.items()):
            if self.period_ms % ms == 0:
                n = self.period_ms // ms
                return f"{self.count}/{'' if n == 1 else n}{unit}"
        return f"{self.count}/{self.period_ms}ms"


def parse_rate(text: str) -> Rate:
    """``"100/m"``, ``"20/s"``, ``"5/h"``, ``"10/30s"`` as a :class:`Rate`; ValueError saying what is accepted."""
    match = _RATE.match(text)
    if match is None or int(match[1]) <= 0 or match[2] == "0":
        raise ValueError(f"rate {text!r}: expected '<count>/<period>' with a period of s, m or h, e.g. '100/m'")
    return Rate(int(match[1]), int(match[2] or 1) * _PERIODS_MS[match[3]])


@dataclass(frozen=True, slots=True)
class Limit:
    """A function's limits: at most ``max_concurrency`` runs at once, at most ``rate`` starts (None: no such limit)."""

    max_concurrency: int | None = None
    rate: Rate | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {self.max_concurrency}")

    def encode(self) -> str:
        """The stored form, read by the Lua scripts: ``<max>|<count>|<period ms>`` (empty: none)."""
        max_ = "" if self.max_concurrency is None else str(self.max_concurrency)
        count, period = ("", "") if self.rate is None else (str(self.rate.count), str(self.rate.period_ms))
        return f"{max_}|{count}|{period}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Limit:
        text = raw.decode() if isinstance(raw, bytes) else raw
        max_, count, period = text.split("|")
        return cls(int(max_) if max_ else None, Rate(int(count), int(period)) if count else None)

    def describe(self) -> str:
        parts = [] if self.max_concurrency is None else [f"max {self.max_concurrency}"]
        if self.rate is not None:
            parts.append(f"rate {self.rate}")
        return ", ".join(parts) or "none"


#: how a job's limit key is found: a parameter's name, or a callable on the validated arguments
KeyOf = str | Callable[[Any], object]


@dataclass(frozen=True, slots=True)
class JobLimits:
    """What ``@job`` declares: the default limit, and the key that makes it per key (None: per function)."""

    default: Limit
    key: KeyOf | None = None

    def entry(self, function: str, kwargs: dict[str, Any], validate: Callable[[dict[str, Any]], BaseModel]) -> str:
        """The side entry of one job: its function, and for a limit per key a newline and the key (``kwargs``: the
        validated arguments in their JSON form; ``validate`` makes them the model a key callable is given)."""
        if self.key is None:
            return function
        value = kwargs.get(self.key) if isinstance(self.key, str) else self.key(validate(kwargs))
        return f"{function}\n{_bounded(value if isinstance(value, str) else orjson.dumps(value).decode())}"


def _bounded(key: str) -> str:
    """``key``, or for a long one its start and a digest of the whole (one bucket per distinct key all the same)."""
    if len(key) <= k.LIMIT_KEY_MAX_CHARS:
        return key
    digest = hashlib.sha256(key.encode(errors="surrogatepass")).hexdigest()[:32]
    return f"{key[: k.LIMIT_KEY_KEPT_CHARS]}…{digest}"


@dataclass(frozen=True, slots=True)
class LimitRow:
    """One line of ``hasten limits``: a function's limit, or one of its buckets (``key``) with jobs in it."""

    function: str
    limit: Limit
    #: the limit declared in the code (what the workers wrote), when it is not the one in force
    declared: Limit | None
    #: the bucket's key, None for the function-wide bucket
    key: str | None
    running: int
    held: int


async def declare_limits(redis: Redis, queue: str, declared: dict[str, Limit]) -> None:
    """At worker start: each function's declared limit, unless it was changed at run time (then kept)."""
    if not declared:
        return
    args: list[str] = []
    for function, limit in declared.items():
        args += [function, limit.encode()]
    await script(redis, "limits")(keys=[k.LIMITS_KEY_PREFIX + queue], args=["declare", _now_ms(), 0, *args])


async def set_limit(redis: Redis, queue: str, function: str, limit: Limit, lease_ms: int) -> None:
    """Change ``function``'s limit now (every claim reads it); held jobs that the new limit lets run are promoted.
    ValueError when no worker declared limits for ``function`` (its jobs carry no limit entry)."""
    keys = [k.LIMITS_KEY_PREFIX + queue, k.WAKE_KEY_PREFIX + queue]
    found = await script(redis, "limits")(keys=keys, args=["set", _now_ms(), lease_ms, function, limit.encode()])
    if not found:
        raise ValueError(
            f"function {function!r} has no limits in queue {queue!r}: only a function that declares one in its @job "
            "(max_concurrency=…, rate_limit=…) can be limited, since only its jobs carry a limit entry"
        )


async def limit_rows(redis: Redis, queue: str) -> list[LimitRow]:
    """Every limited function of ``queue`` (with its running and held jobs), then each of its keys that has some."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(k.LIMITS_KEY_PREFIX + queue)
        pipe.smembers(k.LIMIT_BUCKETS_KEY_PREFIX + queue)
        stored, buckets = await pipe.execute()
    fields = {name.decode(errors="replace"): value for name, value in stored.items()}
    functions = sorted(name for name in fields if not name.startswith("default|"))
    names = sorted(b.decode(errors="replace") for b in buckets)
    async with redis.pipeline(transaction=False) as pipe:
        for bucket in names:
            pipe.zcard(f"{k.LIMIT_RUNNING_KEY_PREFIX}{queue}\n{bucket}")
            pipe.zcard(f"{k.LIMIT_HELD_KEY_PREFIX}{queue}\n{bucket}")
        counts = await pipe.execute() if names else []
    per_bucket = {name: (counts[2 * i], counts[2 * i + 1]) for i, name in enumerate(names)}
    rows: list[LimitRow] = []
    for function in functions:
        limit = Limit.decode(fields[function])
        raw_default = fields.get(f"default|{function}")
        declared = None if raw_default is None or raw_default == fields[function] else Limit.decode(raw_default)
        keyed = sorted((name, c) for name, c in per_bucket.items() if name.startswith(function + "\n"))
        running, held = per_bucket.get(function, (0, 0))
        running += sum(c[0] for _, c in keyed)
        held += sum(c[1] for _, c in keyed)
        rows.append(LimitRow(function, limit, declared, None, running, held))
        rows += [LimitRow(function, limit, declared, name.partition("\n")[2], *c) for name, c in keyed]
    return rows


def _now_ms() -> int:
    return int(time.time() * 1000)
