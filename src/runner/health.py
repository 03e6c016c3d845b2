"""Recording arq's health-check key (read by ``arq --check``) and the worker registry's heartbeat for the worker's
whole life, through Redis outages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .outage import REDIS_DOWN, Outage, RedisHealth, reassert_cancellation

#: how often the recorder looks: arq's record_health writes the key only once its interval has passed (no Redis
#: call otherwise, so ``health_check_interval=0`` writes once a look, never in a hot loop), and a refusal turns the
#: check red within this long
HEALTH_LOOK_EVERY_S = 1.0


async def keep_recording(
    record: Callable[[], Awaitable[None]], health: RedisHealth, duty: str = "recording health"
) -> None:
    """Call ``record`` every :data:`HEALTH_LOOK_EVERY_S` until cancelled; an outage is logged once and retried."""
    outage = Outage(duty, health)
    while True:
        try:
            await record()
            reassert_cancellation()
        except REDIS_DOWN as e:
            await outage.failed(e)
            continue
        outage.ok()
        await asyncio.sleep(HEALTH_LOOK_EVERY_S)
