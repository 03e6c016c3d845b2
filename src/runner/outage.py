"""Errors from Redis: an *outage* is ridden out, a *refusal* is shouted about.

- Outage: connection refused or reset, timeouts, half-open sockets, ``LOADING``, ``OOM`` (full under
  ``noeviction``), ``READONLY`` / ``MASTERDOWN`` (a failover), ``BUSY``, ``TRYAGAIN``, ``CLUSTERDOWN``, ``MOVED`` /
  ``ASK`` on a connection held to one cluster node (its slot moved). Redis will
  take the same command later: retry with backoff, keep outcomes in memory, log once per outage and once when
  Redis is back.
- Refusal: ``WRONGTYPE``, ``NOPERM``, a Lua runtime error, anything else Redis answers with an error. Retrying
  alone will not mend it, somebody must act: it is logged at ERROR on every retry, with what to do, and the
  worker's health check goes red (the worker's :class:`RedisHealth`, read by the health recorder) until it passes.
  ``NOSCRIPT`` (scripts flushed) never gets here: the script runner reloads and retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger("hasten.worker")

#: what a lost or refused connection raises (redis-py wraps most of it; sockets raise OSError)
REDIS_DOWN = (RedisError, OSError)

#: error replies that mean "not now" rather than "never"; Redis puts the code first, a script's error after it
_TRANSIENT_CODES = ("OOM", "READONLY", "LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS")

#: redis-py's classes for some of those codes (their message no longer starts with the code); on a cluster,
#: ``MOVED``/``ASK`` (AskError's subclass MovedError) reach a caller only from a connection held on one node (the
#: blocking pop): its slot moved, and the next try connects to the new owner
_TRANSIENT_CLASSES = (
    OutOfMemoryError, BusyLoadingError, ReadOnlyError, AskError, TryAgainError, ClusterDownError, MasterDownError,
)  # fmt: skip

_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 2.0


def is_refusal(error: BaseException) -> bool:
    """Redis answered, and said no for a reason a retry does not fix (see the module's docstring)."""
    if not isinstance(error, ResponseError) or isinstance(error, _TRANSIENT_CLASSES):
        return False
    message = str(error)
    # inside a script Redis reports "<CODE> ... script: ..." or "... @user_script:..: <CODE> ..."
    return not any(message.startswith(code) or f" {code} " in message for code in _TRANSIENT_CODES)


def reassert_cancellation() -> None:
    """Raise ``CancelledError`` if the current task was cancelled and the cancellation got lost on the way.

    Observed with redis-py 5 on Python 3.11: a cancellation that arrives as a blocking command's reply does can
    be swallowed, and the command returns normally with the task still marked as cancelling. A duty loop calls
    this after each Redis call, so that a worker told to stop does stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisHealth:
    """One worker's view of its Redis: the duties whose last try Redis refused (its health check is red while
    there are any), and what to do when a command times out (replace the pool's connections)."""

    def __init__(self, on_timeout: Callable[[], None] | None = None) -> None:
        self.refusing: set[str] = set()
        self.on_timeout = on_timeout


class Outage:
    """One duty's view of Redis errors: ``await failed(e)`` after an error, ``ok()`` after a success."""

    def __init__(self, duty: str, health: RedisHealth | None = None) -> None:
        self.duty = duty
        self.failures = 0
        self._since = 0.0
        self._health = health if health is not None else RedisHealth()

    async def failed(self, error: BaseException) -> None:
        """Log (an outage once, a refusal every time), then wait before the next try (exponential, capped)."""
        if isinstance(error, TimeoutError | RedisTimeoutError) and self._health.on_timeout is not None:
            self._health.on_timeout()  # a half-open connection: the pool's other connections are suspect too
        if is_refusal(error):
            self._health.refusing.add(self.duty)
            logger.error(
                "%s: Redis refused the command (%s: %s); retrying, but this needs a fix: check the Redis user's "
                "ACL permissions (NOPERM), keys of the wrong type written by something else (WRONGTYPE), or the "
                "server's logs; the worker's health check is red until it passes",
                self.duty, type(error).__name__, error,
            )  # fmt: skip
        elif self.failures == 0:
            self._since = time.monotonic()
            logger.warning(
                "%s: Redis unavailable (%s: %s); retrying with backoff", self.duty, type(error).__name__, error
            )
        self.failures += 1
        await asyncio.sleep(min(_FIRST_DELAY_S * 2 ** (self.failures - 1), _MAX_DELAY_S))

    def ok(self) -> None:
        if self.failures:
            if self.duty in self._health.refusing:
                self._health.refusing.discard(self.duty)
                logger.info("%s: Redis accepts the command again", self.duty)
            else:
                logger.info("%s: Redis is back after %.1fs", self.duty, time.monotonic() - self._since)
            self.failures = 0
