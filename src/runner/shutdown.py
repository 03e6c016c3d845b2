"""Graceful drain on SIGTERM/SIGINT: stop taking jobs, let running ones finish, then put the rest back.

arq cancels every running job the moment a signal arrives. Our worker stops picking up jobs (and stops
being handed any), waits up to ``shutdown_grace_s`` for running jobs to finish, and only then cancels what
is left; those jobs go back to the queue at their old place without spending a try. A second signal skips
the wait. Either way the process exits with code 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

logger = logging.getLogger("hasten.worker")

#: how often the drain checks whether the running jobs are done
_DRAIN_CHECK_S = 0.05


class GracefulShutdown:
    # set by Worker.__init__ (ours or arq's)
    shutdown_grace_s: float
    tasks: dict[str, asyncio.Task[Any]]
    allow_pick_jobs: bool
    loop: asyncio.AbstractEventLoop
    _drain_task: asyncio.Task[None] | None

    async def stop_handoffs(self) -> None:
        """Stop being handed jobs; give back those handed over but not started (Worker implements it)."""
        raise NotImplementedError

    def handle_sig(self, signum: int) -> None:
        sig = signal.Signals(signum)
        if sig is signal.SIGUSR1 or self._drain_task is not None or self.shutdown_grace_s <= 0:
            # a second signal, or a programmatic close: cancel what runs, at once (arq's behaviour)
            super().handle_sig(signum)  # type: ignore[misc]
            return
        self.allow_pick_jobs = False
        logger.info(
            "shutdown on %s: taking no new jobs; waiting up to %gs for %d running (signal again to stop now)",
            sig.name, self.shutdown_grace_s, len(self.tasks),
        )  # fmt: skip
        self._drain_task = self.loop.create_task(self._drain(sig))

    async def _drain(self, sig: signal.Signals) -> None:
        try:
            await self.stop_handoffs()
        except Exception:
            logger.warning("could not unregister from hand-offs; close() tries again", exc_info=True)
        deadline = time.monotonic() + self.shutdown_grace_s
        while self.tasks and time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_CHECK_S)
        if self.tasks:
            logger.info("grace period over: %d jobs go back to the queue", len(self.tasks))
        super().handle_sig(sig)  # type: ignore[misc]
