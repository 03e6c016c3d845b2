"""Live updates: one poller per dashboard app reads Redis about once a second while at least one browser
watches, and fans the result out to every subscriber; with nobody watching it does not run at all.

Each subscriber holds only the latest update (a queue of one), so a slow browser skips updates instead of
piling them up, and no browser gets more than one per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

logger = logging.getLogger("hasten.dashboard")

#: seconds between reads while someone watches
INTERVAL_S = 1.0
#: an idle event stream sends a comment this often, so that proxies keep it open and gone browsers are noticed
KEEPALIVE_S = 15.0


class Poller:
    def __init__(self, read: Callable[[], Awaitable[str]], interval_s: float = INTERVAL_S) -> None:
        self._read = read
        self.interval_s = interval_s
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None
        #: reads done so far (tests check that nothing is read with nobody watching)
        self.reads = 0
        #: where the dashboard is mounted, for the links in what it sends (set by the event stream's route)
        self.render_base = ""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[str]]:
        updates: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._subscribers.add(updates)
        if not self.running:
            self._task = asyncio.create_task(self._run(), name="hasten-dashboard-poller")
        try:
            yield updates
        finally:
            self._subscribers.discard(updates)
            if not self._subscribers:
                await self.stop()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while self._subscribers:
            try:
                update = await self._read()
            except Exception:  # Redis away for a moment: the pages keep their last numbers, the next read retries
                logger.warning("dashboard: reading the overview failed", exc_info=True)
            else:
                self.reads += 1
                for queue in self._subscribers:
                    if queue.full():  # a browser that has not taken the last update gets this one instead
                        queue.get_nowait()
                    queue.put_nowait(update)
            await asyncio.sleep(self.interval_s)


async def event_stream(poller: Poller, event: str) -> AsyncIterator[bytes]:
    """``text/event-stream`` messages of ``event`` from the poller until the browser goes."""
    async with poller.subscribe() as updates:
        yield b"retry: 2000\n\n"
        while True:
            try:
                update = await asyncio.wait_for(updates.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            data = "".join(f"data: {line}\n" for line in update.splitlines() or [""])
            yield f"event: {event}\n{data}\n".encode()
