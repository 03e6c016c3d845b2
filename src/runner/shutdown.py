"""Graceful drain on SIGTERM/SIGINT: stop taking jobs, let running ones finish, then put the rest back.

arq cancels every running job the moment a signal arrives. Our worker stops picking up jobs (and stops
being handed any), waits up to ``shutdown_grace_s`` for running jobs to finish, and only then cancels what
is left, for reason "shutdown": those jobs go back to the queue at their old place without spending a try. A
second signal skips the wait. Either way the process exits with code 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from . import constants as k
from .outage import REDIS_DOWN
from .pickup import Pickup
from .running import RunningJobs

logger = logging.getLogger("hasten.worker")


class GracefulDrain:
    """What a signal does to a worker; ``stop_now(sig)`` cancels what runs and ends the worker's main task."""

    def __init__(
        self,
        *,
        running: RunningJobs,
        pickup: Callable[[], Pickup | None],
        grace_s: float,
        stop_handoffs: Callable[[], Awaitable[None]],
        stop_now: Callable[[signal.Signals], None],
    ) -> None:
        self._running = running
        self._pickup = pickup
        self._grace_s = grace_s
        self._stop_handoffs = stop_handoffs
        self._stop_now = stop_now
        self._task: asyncio.Task[None] | None = None
        #: a signal came (a second one stops at once)
        self._signalled = False

    def on_signal(self, sig: signal.Signals) -> None:
        if sig is signal.SIGUSR1 or self._signalled or self._grace_s <= 0:
            # a second signal, or a programmatic close: cancel what runs, at once (arq's behaviour)
            self._stop_now(sig)
            return
        self._signalled = True
        if self._task is None:  # else a recycle drains already: this signal is the first, it waits with it
            self._begin(sig.name, sig)

    def recycle(self, why: str) -> None:
        """Drain as on a first SIGTERM because the worker is being recycled (``recycle.py``); a signal that comes
        meanwhile (the supervisor stopping) still counts as the first one."""
        if self._task is None and not self._signalled:
            self._begin(f"recycling ({why})", signal.SIGTERM)

    def _begin(self, why: str, sig: signal.Signals) -> None:
        pickup = self._pickup()
        if pickup is not None:
            pickup.stop()
        logger.info(
            "shutdown on %s: taking no new jobs; waiting up to %gs for %d running (signal again to stop now)",
            why, self._grace_s, len(self._running),
        )  # fmt: skip
        self._task = asyncio.get_running_loop().create_task(self._drain(sig))

    async def _drain(self, sig: signal.Signals) -> None:
        try:
            await self._stop_handoffs()
        except Exception:
            logger.warning("could not unregister from hand-offs; close() tries again", exc_info=True)
        tasks = self._running.tasks()
        if tasks:
            await asyncio.wait(tasks, timeout=self._grace_s)
        if len(self._running):
            logger.info("grace period over: %d jobs go back to the queue", len(self._running))
        self._stop_now(sig)


async def within_bound(step: Awaitable[Any], failed: str = "") -> None:
    """A closing step that needs Redis, bounded: Redis being away must not hold up the exit; ``failed`` is
    logged (at WARNING) when the step could not be done."""
    try:
        async with asyncio.timeout(k.SHUTDOWN_WRITE_BOUND_S):
            await step
    except (*REDIS_DOWN, TimeoutError):
        if failed:
            logger.warning("%s", failed)
