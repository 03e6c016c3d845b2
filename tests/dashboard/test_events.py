"""Live updates: one poller, running only while someone watches, at most one update per interval per browser."""

from __future__ import annotations

import asyncio
import contextlib

from src.runner.dashboard.events import Poller, event_stream
from tests.waiting import wait_for


async def test_the_poller_reads_only_while_someone_watches() -> None:
    reads = 0

    async def read() -> str:
        nonlocal reads
        reads += 1
        return f"<p>update {reads}</p>\n<p>two lines</p>"

    poller = Poller(read, interval_s=0.01)
    await asyncio.sleep(0.05)
    assert reads == 0 and not poller.running

    first, second = event_stream(poller, "overview"), event_stream(poller, "overview")
    assert await anext(first) == b"retry: 2000\n\n"
    assert await anext(second) == b"retry: 2000\n\n"
    message = (await anext(first)).decode()
    assert message.startswith("event: overview\ndata: <p>update ") and message.endswith("data: <p>two lines</p>\n\n")
    await anext(second)
    assert poller.running and poller.subscribers == 2, "one poller for every browser"

    await first.aclose()
    assert poller.running, "the other browser still watches"
    await second.aclose()
    assert not poller.running and poller.subscribers == 0
    stopped_at = reads
    await asyncio.sleep(0.05)
    assert reads == stopped_at, "read Redis with nobody watching"


async def test_a_slow_browser_gets_the_latest_update_only() -> None:
    n = 0

    async def read() -> str:
        nonlocal n
        n += 1
        return str(n)

    poller = Poller(read, interval_s=0.001)
    async with poller.subscribe() as updates:
        await wait_for(lambda: n >= 20)
        assert updates.qsize() == 1
        assert int(updates.get_nowait()) >= 19
    assert not poller.running


async def test_a_failing_read_does_not_stop_the_poller() -> None:
    calls = 0

    async def read() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("Redis away for a moment")
        return "back"

    poller = Poller(read, interval_s=0.001)
    async with poller.subscribe() as updates:
        assert await asyncio.wait_for(updates.get(), 5) == "back"
    with contextlib.suppress(Exception):
        await poller.stop()
