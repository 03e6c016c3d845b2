"""A dashboard on the test Redis: in process for the API tests (an ASGI client), and served by uvicorn on a free
loopback port for the browser tests."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict
from typing import Any

import httpx2
import orjson
import pytest
import uvicorn
from arq.connections import ArqRedis
from fastapi import FastAPI
from playwright.async_api import Browser, async_playwright

from src.runner import JobSpec
from src.runner import constants as k
from src.runner.dashboard import DashboardOptions, dashboard
from src.runner.dashboard.state import DashboardState
from src.runner.dlq import DeadJob
from src.runner.redis_server import free_port
from tests.dashboard.chromium import CHROMIUM
from tests.sample_jobs import add, echo, nap, reports, switchable

JOBS: list[JobSpec[Any, Any]] = [add, echo, nap, reports, switchable]

#: builds a dashboard app on the test Redis with these options, and an HTTP client of it
Dash = Callable[..., "tuple[FastAPI, httpx2.AsyncClient]"]


@pytest.fixture
async def dash(redis: ArqRedis) -> AsyncIterator[Dash]:
    clients: list[httpx2.AsyncClient] = []

    def build(client_addr: tuple[str, int] = ("127.0.0.1", 50000), host: str = "127.0.0.1", **options: Any):
        app = dashboard(redis=redis, options=DashboardOptions(jobs=tuple(JOBS), **options))
        transport = httpx2.ASGITransport(app=app, client=client_addr)
        http = httpx2.AsyncClient(transport=transport, base_url=f"http://{host}", follow_redirects=False)
        clients.append(http)
        return app, http

    yield build
    for http in clients:
        await http.aclose()


async def write_dead(redis: ArqRedis, job_ids: list[str], function: str = "echo") -> None:
    """Dead-letter records as a worker writes them, without running the jobs (many, fast: one pipeline)."""
    async with redis.pipeline(transaction=False) as pipe:
        for i, job_id in enumerate(job_ids):
            record = DeadJob(
                job_id, k.default_queue_name, function, [], {"text": "<i>not italic</i> " * 20}, "permanent failure",
                "Permanent", "<b>no</b> " * 40, "", 3, 1_796_000_000_000, 1_796_000_000_000, 1_796_000_000_000 + i,
                base64.b64encode(b"the job as queued").decode(),
            )  # fmt: skip
            pipe.set(k.DLQ_ENTRY_KEY_PREFIX + job_id, orjson.dumps(asdict(record)))
            pipe.zadd(k.DLQ_KEY_PREFIX + k.default_queue_name, {job_id: record.failed_at_ms})
        await pipe.execute()


class Served:
    """A dashboard app served by uvicorn in a thread of its own (its own event loop, its own Redis pool)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"dashboard-{self.port}", daemon=True)

    def app_state(self) -> DashboardState:
        state: DashboardState = self.app.state.dashboard
        return state

    async def __aenter__(self) -> Served:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the dashboard's server did not start")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await asyncio.to_thread(self.thread.join, 10)


@pytest.fixture
def serve(env: pytest.MonkeyPatch) -> Callable[..., Served]:
    """A dashboard of the process settings (the test Redis), to serve with ``async with serve(...)``."""
    from src.settings import get_settings

    def build(**overrides: Any) -> Served:
        settings = get_settings()
        options = DashboardOptions.from_settings(settings, jobs=tuple(JOBS), **overrides)
        return Served(dashboard(settings, options=options))

    return build


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Any]:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    yield path
