"""Riding out a Redis outage: retry with backoff, and say so once per outage instead of once per try."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

logger = logging.getLogger("hasten.worker")

#: what a lost or refused connection raises (redis-py wraps most of it; sockets raise OSError)
REDIS_DOWN = (RedisError, OSError)

_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 2.0


class Outage:
    """One duty's view of Redis being away: ``await failed(e)`` after an error, ``ok()`` after a success."""

    def __init__(self, duty: str) -> None:
        self.duty = duty
        self.failures = 0
        self._since = 0.0

    async def failed(self, error: BaseException) -> None:
        """Log the first failure of an outage, then wait before the next try (exponential, capped)."""
        if self.failures == 0:
            self._since = time.monotonic()
            logger.warning(
                "%s: Redis unavailable (%s: %s); retrying with backoff", self.duty, type(error).__name__, error
            )
        self.failures += 1
        await asyncio.sleep(min(_FIRST_DELAY_S * 2 ** (self.failures - 1), _MAX_DELAY_S))

    def ok(self) -> None:
        if self.failures:
            logger.info("%s: Redis is back after %.1fs", self.duty, time.monotonic() - self._since)
            self.failures = 0
