"""Waiting on a condition instead of sleeping for a guessed time.

A sleep long enough on an idle laptop is too short on a loaded CI machine, and too long everywhere else; a test
waits for what it needs to be true, bounded by a timeout that only a failure ever reaches.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

#: under ``CI=true`` (a shared, loaded machine) a wait may take this much longer before it counts as a failure
SLOW_FACTOR = 3.0 if os.environ.get("CI", "").lower() in ("1", "true", "yes") else 1.0


@overload
async def wait_for(
    condition: Callable[[], Awaitable[T | None]],
    timeout_s: float = ...,
    *,
    interval_s: float = ...,
    message: str | Callable[[], str] = ...,
) -> T: ...


@overload
async def wait_for(
    condition: Callable[[], T | None],
    timeout_s: float = ...,
    *,
    interval_s: float = ...,
    message: str | Callable[[], str] = ...,
) -> T: ...


async def wait_for(
    condition: Callable[[], Any],
    timeout_s: float = 20,
    *,
    interval_s: float = 0.01,
    message: str | Callable[[], str] = "",
) -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy, and return that.

    Raises ``AssertionError`` (with ``message`` and the last value) when ``timeout_s`` times :data:`SLOW_FACTOR`
    passes first. ``timeout_s`` is a bound for failures, never a pause: a passing test waits only as long as
    the condition takes.
    """
    deadline = time.monotonic() + timeout_s * SLOW_FACTOR
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            what = (message() if callable(message) else message) or "condition"
            raise AssertionError(f"{what} not met within {timeout_s * SLOW_FACTOR:g} s (last: {value!r})")
        await asyncio.sleep(interval_s)
