"""With a million jobs in its queue, each page of the dashboard loads within #13's bound (200 ms), in real Chromium.
What is bounded is the server's share, read from the page's own navigation timing (the ``Server-Timing`` the
dashboard sends), median of five loads: how busy the machine running the browser is does not decide it."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from playwright.async_api import Browser, Page, expect

from src.runner import Codec
from src.runner import constants as k
from tests.dashboard.chromium import open_page, shot
from tests.dashboard.conftest import Served

JOBS = 1_000_000
BOUND_MS = 200.0
LOADS = 5
#: jobs one call of the fill script writes: a few hundred ms of Redis at most
FILL_STEP = 50_000
#: due times 10 ms apart, the first half in the past (queued), the second half ahead (deferred)
SPACING_MS = 10

# Writes jobs in arq's format (the payload of ``echo("x")``, which names no id) inside Redis: ~2 s a million, where
# a client's pipelines take tens of seconds. KEYS[1] queue; ARGV job key prefix, payload, first index, count,
# first due ms, spacing ms.
FILL = """
local prefix, payload, first, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local due, spacing = tonumber(ARGV[5]), tonumber(ARGV[6])
local members = {}
for i = first, first + n - 1 do
  local id = string.format('%07d-million', i)
  redis.call('SET', prefix .. id, payload)
  members[#members + 1] = due + i * spacing
  members[#members + 1] = id
  if #members >= 2000 then redis.call('ZADD', KEYS[1], unpack(members)); members = {} end
end
if #members > 0 then redis.call('ZADD', KEYS[1], unpack(members)) end
return n
"""


async def _fill(redis: ArqRedis, codec: Codec, first_due_ms: int) -> None:
    payload = codec.dumps({"t": None, "f": "echo", "a": [], "k": {"text": "x"}, "et": int(time.time() * 1000)})
    fill = redis.register_script(FILL)
    for first in range(0, JOBS, FILL_STEP):
        args = [k.job_key_prefix, payload, first, FILL_STEP, first_due_ms, SPACING_MS]
        await fill(keys=[k.default_queue_name], args=args)  # type: ignore[arg-type]
    assert await redis.zcard(k.default_queue_name) == JOBS


async def _server_ms(page: Page, url: str) -> tuple[float, float]:
    """One load: the server's time (its ``Server-Timing``, as the browser received it) and request to last byte."""
    await page.goto(url)
    timing = await page.evaluate(
        """() => {
            const nav = performance.getEntriesByType("navigation")[0];
            const app = nav.serverTiming.find((t) => t.name === "app");
            return [app ? app.duration : null, nav.responseEnd - nav.requestStart];
        }"""
    )
    assert timing[0] is not None, f"{url}: the browser saw no Server-Timing"
    return float(timing[0]), float(timing[1])


@pytest.mark.timeout(240)
async def test_each_page_loads_within_200ms_with_a_million_jobs(
    redis: ArqRedis, codec: Codec, serve: Callable[..., Served], browser: Browser, artifacts: Path
) -> None:
    now_ms = int(time.time() * 1000)
    first_due_ms = now_ms - JOBS // 2 * SPACING_MS
    started = time.perf_counter()
    await _fill(redis, codec, first_due_ms)
    fill_s = time.perf_counter() - started
    middle = 750_000  # a deferred job, deep in the queue
    deep = f"{first_due_ms + middle * SPACING_MS}:{middle:07d}-million"
    pages = {
        "overview": "/",
        "jobs": "/jobs",
        "jobs deferred": "/jobs?status=deferred",
        "jobs of a function": "/jobs?function=echo",
        "jobs deep (cursor)": f"/jobs?cursor={deep}",
        "jobs in a time range": f"/jobs?from={first_due_ms + 600_000 * SPACING_MS}&to={now_ms + 3_600_000}",
    }
    measured: dict[str, dict[str, float]] = {}
    try:
        async with serve() as site:
            page = await open_page(browser)
            for name, path in pages.items():
                await _server_ms(page, site.url + path)  # the first load warms the connection pool and scripts
                loads = [await _server_ms(page, site.url + path) for _ in range(LOADS)]
                measured[name] = {
                    "server_ms": round(statistics.median(t[0] for t in loads), 1),
                    "response_ms": round(statistics.median(t[1] for t in loads), 1),
                }
                if path.startswith("/jobs"):
                    await expect(page.locator("td.id a")).to_have_count(50)  # a full page, not an empty one
                    await expect(page.locator("td.name").first).to_have_text("echo")
            await page.goto(site.url + "/jobs?status=deferred")
            await shot(page, artifacts, "jobs-million", whole=False)
            assert page.errors == []  # type: ignore[attr-defined]
    finally:
        await redis.flushdb(asynchronous=True)  # frees the memory in the background
    report = {"jobs": JOBS, "fill_s": round(fill_s, 1), "pages": measured}
    (artifacts / "million.json").write_text(json.dumps(report, indent=2))
    slow = {name: m["server_ms"] for name, m in measured.items() if m["server_ms"] >= BOUND_MS}
    assert not slow, f"pages over {BOUND_MS:.0f} ms with a million jobs: {slow}"
