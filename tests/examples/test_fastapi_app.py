"""The example service, served by uvicorn (real lifespan) with a real worker, driven over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
from arq.connections import ArqRedis

from examples import fastapi_app
from src.jobs import ALL
from src.runner.redis_server import free_port
from src.runner.worker import Worker
from tests.servers import serve_http
from tests.waiting import wait_for


@pytest.fixture
async def api(env: pytest.MonkeyPatch, running_worker: Callable[..., Worker]) -> AsyncIterator[httpx2.AsyncClient]:
    port = free_port()
    env.setenv("JOBS_API_PORT", str(port))  # where /demo delivers its webhook
    env.setenv("JOBS_WEBHOOK_ALLOWED_NETWORKS", '["127.0.0.1/32"]')  # this app's /echo is on loopback
    running_worker(ALL)
    async with serve_http(fastapi_app.app, port), httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        yield http


async def test_enqueue_and_await_a_typed_result(api: httpx2.AsyncClient) -> None:
    body = {"url": f"{api.base_url}/echo", "event": "order.paid", "payload": {"order": 1}}
    response = await api.post("/webhooks/wait", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status_code"] == 200
    assert fastapi_app.received[-1]["body"]["payload"] == {"order": 1}


async def test_enqueue_then_follow_the_job(api: httpx2.AsyncClient) -> None:
    body = {"url": f"{api.base_url}/echo", "event": "e", "payload": {}}
    response = await api.post("/webhooks", json=body)
    assert response.status_code == 202
    job_id = response.json()["job_id"]

    async def complete() -> dict[str, Any] | None:
        view: dict[str, Any] = (await api.get(f"/jobs/{job_id}")).json()
        return view if view["status"] == "complete" else None

    view = await wait_for(complete, message="the job complete")
    assert view["success"] is True and view["function"] == "deliver_webhook"
    assert view["result"]["status_code"] == 200


async def test_demo_round_trip(api: httpx2.AsyncClient) -> None:
    response = await api.post("/demo")
    assert response.status_code == 200 and response.json()["attempt"] == 1


async def test_bad_input_is_a_422_and_nothing_is_queued(api: httpx2.AsyncClient, redis: ArqRedis) -> None:
    response = await api.post("/webhooks", json={"url": "nope", "event": "", "payload": {}})
    assert response.status_code == 422
    response = await api.post("/emails", json={"to": ["not-an-address"], "subject": "s", "text": "t"})
    assert response.status_code == 422
    assert await redis.zcard("arq:queue") == 0


async def test_unknown_job_is_404(api: httpx2.AsyncClient) -> None:
    assert (await api.get("/jobs/does-not-exist")).status_code == 404


async def test_demo_target_ignores_the_host_header(api: httpx2.AsyncClient) -> None:
    before = len(fastapi_app.received)
    response = await api.post("/demo", headers={"host": "169.254.169.254"})
    assert response.status_code == 200
    assert len(fastapi_app.received) == before + 1  # delivered to this app's own /echo, not to the Host header


async def test_redis_going_away_is_a_503_not_a_500(
    env: pytest.MonkeyPatch, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    from pathlib import Path

    from src.runner.redis_server import RedisServer
    from src.settings import get_settings

    server = RedisServer(Path(str(tmp_path)) / "gone", options={"save": "''", "appendonly": "no"}).start()
    env.setenv("JOBS_REDIS_URL", server.url)
    get_settings.cache_clear()
    port = free_port()
    try:
        async with serve_http(fastapi_app.app, port), httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            server.kill()
            response = await http.get("/jobs/some-id")
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": "Redis is unavailable; try again shortly"}
        assert "GET /jobs/some-id: Redis unavailable" in caplog.text
    finally:
        server.stop()
