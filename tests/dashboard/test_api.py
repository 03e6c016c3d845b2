"""The dashboard's pages and JSON API against a real Redis with real jobs run by a real worker."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime

from arq.connections import ArqRedis

from src.runner import JobClient, json_rows, pausing
from src.runner import constants as k
from src.runner.dashboard.bulk import STALLED_MS, BulkOp
from src.runner.dlq import PAGE_ROWS, DeadLetters
from src.runner.queue_admin import list_jobs
from src.runner.worker import Worker
from tests.dashboard.conftest import JOBS, Dash, write_dead
from tests.sample_jobs import echo, nap, switchable
from tests.waiting import wait_for

HTML = {"accept": "text/html"}


async def _csrf(http) -> str:
    """The double-submit token a browser gets with its first page."""
    response = await http.get("/", headers=HTML)
    assert response.status_code == 200
    token: str = http.cookies["hasten_csrf"]
    return token


async def _dead(redis: ArqRedis, job_id: str) -> bool:
    return await DeadLetters(redis).get(job_id) is not None


async def test_overview_counts_and_security_headers(client: JobClient, dash: Dash) -> None:
    await client.enqueue(nap.options(defer_by=60), 1)
    await client.enqueue(nap, 1)
    _, http = dash()
    page = await http.get("/", headers=HTML)
    assert page.status_code == 200
    assert '<dd data-count="queued">1</dd>' in page.text and '<dd data-count="deferred">1</dd>' in page.text
    assert "No worker is alive" in page.text
    assert '<p class="muted">\N{EN DASH}</p>' in page.text  # duration percentiles: none recorded yet
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["server-timing"].startswith("app;dur=")  # what the page took, for a browser's timing
    # the one script, from the package
    script = await http.get("/static/dashboard.js")
    assert script.status_code == 200 and "EventSource" in script.text


async def test_jobs_page_through_with_a_cursor(client: JobClient, dash: Dash) -> None:
    """The jobs page and API page with the listing's cursor (deep pages cost what the first does), filters and
    an id prefix included; a cursor that is not one is a 422, not a 500."""
    ids = [(await client.enqueue(echo.options(defer_by=60 + i, job_id=f"page-{i:03d}"), "x")).job_id for i in range(7)]
    await client.enqueue(echo.options(defer_by=600, job_id="other-1"), "y")
    _, http = dash()
    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        response = await http.get("/api/jobs", params={"prefix": "page-", "limit": 3, "cursor": cursor})
        assert response.status_code == 200, response.text
        seen += [row["job_id"] for row in response.json()]
        cursor = response.headers.get("x-next-cursor", "")
        if not cursor:
            break
    assert seen == ids
    page = await http.get("/jobs", params={"prefix": "page-"}, headers=HTML)
    assert page.status_code == 200 and all(job_id in page.text for job_id in ids) and "other-1" not in page.text
    assert (await http.get("/api/jobs", params={"cursor": "not a cursor"})).status_code == 422


async def test_jobs_filtered_by_due_time(client: JobClient, dash: Dash) -> None:
    """``from``/``to`` bound the due time, as ISO times (UTC unless they say) or epoch ms, on the page and in the
    API alike; a time that is neither is a 422 that says both forms."""
    handles = [await client.enqueue(echo.options(defer_by=3600 * (i + 1), job_id=f"hour-{i}"), "x") for i in range(4)]
    due_ms = [int(await client.redis.zscore(client.queue_name, h.job_id)) for h in handles]
    _, http = dash()
    low, high = due_ms[1], due_ms[2]
    by_ms = await http.get("/api/jobs", params={"from": str(low), "to": str(high)})
    assert [row["job_id"] for row in by_ms.json()] == ["hour-1", "hour-2"]
    iso = datetime.fromtimestamp(due_ms[2] / 1000, UTC).isoformat()
    page = await http.get("/jobs", params={"from": iso}, headers=HTML)
    assert page.status_code == 200
    assert "hour-0" not in page.text and "hour-1" not in page.text and "hour-2" in page.text and "hour-3" in page.text
    assert f'name="from" value="{iso[:19].replace("T", " ")}"' in page.text  # shown back as the table shows times
    wrong = await http.get("/api/jobs", params={"to": "next tuesday"})
    assert wrong.status_code == 422 and "ISO time" in wrong.json()["detail"]


async def test_overview_shows_duration_percentiles_per_function(
    client: JobClient, running_worker: Callable[..., Worker], dash: Dash
) -> None:
    running_worker(JOBS)
    handles = [await client.enqueue(echo, f"hello {i}") for i in range(3)]
    for handle in handles:
        await handle.result(timeout_s=10)
    _, http = dash()

    async def listed() -> str | None:
        page = await http.get("/", headers=HTML)
        return page.text if '<td class="id">echo</td>' in page.text else None

    text = await wait_for(listed, 20, message="the overview listing echo's try durations")
    assert '<p class="muted">\N{EN DASH}</p>' not in text


async def test_api_rows_are_the_clis_rows(client: JobClient, redis: ArqRedis, dash: Dash) -> None:
    handle = await client.enqueue(echo.options(defer_by=60), "hello")
    _, http = dash()
    rows = (await http.get("/api/jobs", params={"status": "deferred"})).json()
    assert rows == [json_rows.queued_job_row(r) for r in await list_jobs(redis, client.codec.loads, state="deferred")]
    assert rows[0]["job_id"] == handle.job_id
    record = (await http.get(f"/api/jobs/{handle.job_id}")).json()
    assert record == {**await json_rows.job_record(client, handle.job_id), "dead": None}
    [queue] = (await http.get("/api/queues")).json()
    assert queue["deferred"] == 1 and len(queue["minutes"]) == 16  # the CLI's 15 minutes and the current one
    assert (await http.get("/api/jobs", params={"status": "sideways"})).status_code == 422
    assert (await http.get("/api/jobs", params={"queue": "arq:result:x"})).status_code == 404  # queues only
    openapi = (await http.get("/api/openapi.json")).json()
    assert "/api/dead-letters/{job_id}/{action}" in openapi["paths"] and "/" not in openapi["paths"]


async def test_a_failed_job_its_page_and_requeue_from_the_dead_letters(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker], dash: Dash
) -> None:
    running_worker(JOBS)
    await redis.set("broken", "1")
    handle = await client.enqueue(switchable)
    await wait_for(lambda: _dead(redis, handle.job_id), message="the job never reached the dead letters")
    _, http = dash()
    listing = await http.get("/dead-letters", headers=HTML)
    assert handle.job_id in listing.text and "Permanent" in listing.text
    page = await http.get(f"/jobs/{handle.job_id}", headers=HTML)
    assert page.status_code == 200
    assert "broken on purpose" in page.text and "Traceback" in page.text and "dead letter" in page.text
    api = (await http.get(f"/api/dead-letters/{handle.job_id}")).json()
    dead = await DeadLetters(redis).get(handle.job_id)
    assert dead is not None and api == json_rows.dead_row(dead)
    assert "payload_b64" not in api

    await redis.delete("broken")
    token = http.cookies["hasten_csrf"]
    requeued = await http.post("/dead-letters/requeue", data={"csrf": token, "one": handle.job_id})
    assert requeued.status_code == 303 and "requeued+1+of+1" in requeued.headers["location"]
    assert await handle.result(timeout_s=10) == "fixed"


async def test_abort_a_running_job(client: JobClient, running_worker: Callable[..., Worker], dash: Dash) -> None:
    running_worker(JOBS)
    handle = await client.enqueue(nap, 30)
    _, http = dash()

    async def running() -> bool:
        return (await http.get(f"/api/jobs/{handle.job_id}")).json()["worker"] is not None

    await wait_for(running, message="the job never ran")
    page = await http.get(f"/jobs/{handle.job_id}", headers=HTML)
    assert 'data-action="abort"' in page.text and "lease left" in page.text
    aborted = await http.post(f"/jobs/{handle.job_id}/abort", data={"csrf": http.cookies["hasten_csrf"]})
    assert aborted.status_code == 303 and "message=aborted" in aborted.headers["location"]
    assert (await handle.status()).value == "complete"


async def test_actions_need_the_csrf_token_and_our_origin(client: JobClient, dash: Dash) -> None:
    handle = await client.enqueue(nap.options(defer_by=60), 1)
    _, http = dash()
    token = await _csrf(http)
    path = f"/jobs/{handle.job_id}/abort"
    assert (await http.post(path)).status_code == 403  # no token
    assert (await http.post(path, data={"csrf": "forged"})).status_code == 403
    cross = {"origin": "http://evil.example"}
    assert (await http.post(path, data={"csrf": token}, headers=cross)).status_code == 403
    assert (await http.post(path, data={"csrf": token}, headers={"sec-fetch-site": "cross-site"})).status_code == 403
    assert (await http.post("/api/jobs", json={"function": "echo", "arguments": {"text": "x"}})).status_code == 403
    assert await client.redis.zcard("arq:queue") == 1, "a refused request changed something"
    cross = {"origin": "http://127.0.0.1.evil.example"}
    assert (await http.post(path, data={"csrf": token}, headers=cross)).status_code == 403
    same = {"origin": "https://127.0.0.1"}  # the browser's origin behind a proxy that ends TLS
    assert (await http.post(path, data={"csrf": token}, headers=same)).status_code == 303


async def test_credentials(client: JobClient, dash: Dash) -> None:
    from pydantic import SecretStr

    _, http = dash(token=SecretStr("s3cret-token"), client_addr=("10.1.2.3", 50000), host="jobs.example")
    assert (await http.get("/api/queues")).status_code == 401
    login = await http.get("/", headers=HTML)
    assert login.status_code == 303 and login.headers["location"].startswith("/login")
    assert (await http.get("/api/queues", headers={"authorization": "Bearer s3cret-token"})).status_code == 200
    assert (await http.get("/api/queues", headers={"authorization": "Bearer nope"})).status_code == 401
    form = await http.get("/login", headers=HTML)
    token = http.cookies["hasten_csrf"]
    assert "s3cret-token" not in form.text
    wrong = await http.post("/login", data={"csrf": token, "token": "nope", "next": "/jobs"})
    assert wrong.status_code == 401 and "hasten_session" not in http.cookies
    signed_in = await http.post("/login", data={"csrf": token, "token": "s3cret-token", "next": "//evil.example/"})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"  # never an open redirect
    assert "s3cret-token" not in http.cookies["hasten_session"]
    assert (await http.get("/", headers=HTML)).status_code == 200

    _, basic = dash(username="ops", password=SecretStr("pw"), client_addr=("10.1.2.3", 50000))
    refused = await basic.get("/api/workers")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    good = base64.b64encode(b"ops:pw").decode()
    assert (await basic.get("/api/workers", headers={"authorization": f"Basic {good}"})).status_code == 200


async def test_without_credentials_only_loopback_is_served(dash: Dash) -> None:
    _, remote = dash(client_addr=("10.1.2.3", 50000))
    assert (await remote.get("/api/queues")).status_code == 403
    _, rebound = dash(host="attacker.example")  # a DNS-rebinding page: loopback client, foreign host name
    assert (await rebound.get("/api/queues")).status_code == 403
    _, local = dash()
    assert (await local.get("/api/queues", headers={"x-forwarded-for": "10.1.2.3"})).status_code == 403
    assert (await local.get("/api/queues")).status_code == 200


async def test_read_only_has_no_actions(client: JobClient, redis: ArqRedis, dash: Dash) -> None:
    handle = await client.enqueue(nap.options(defer_by=60), 1)
    _, http = dash(read_only=True)
    page = await http.get(f"/jobs/{handle.job_id}", headers=HTML)
    assert "read-only" in page.text and "Abort" not in page.text and "Enqueue" not in page.text
    token = http.cookies["hasten_csrf"]
    assert (await http.post(f"/jobs/{handle.job_id}/abort", data={"csrf": token})).status_code in (404, 405)
    assert "enqueueing is off" in (await http.get("/enqueue", headers=HTML)).text
    assert (await http.post("/enqueue", data={"csrf": token})).status_code in (404, 405)
    assert await redis.zcard("arq:queue") == 1


async def test_enqueue_form_validates_like_the_client(redis: ArqRedis, dash: Dash) -> None:
    _, http = dash()
    token = await _csrf(http)
    bad = await http.post("/enqueue", data={"csrf": token, "function": "add", "kwargs": '{"a": "many"}'})
    assert bad.status_code == 422 and "invalid arguments for add()" in bad.text
    assert (await http.post("/enqueue", data={"csrf": token, "function": "add", "kwargs": "{"})).status_code == 422
    unknown = await http.post("/enqueue", data={"csrf": token, "function": "nope", "kwargs": "{}"})
    assert unknown.status_code == 422 and "registered: add, echo" in unknown.text
    assert await redis.zcard("arq:queue") == 0, "a refused enqueue wrote a job"
    good = await http.post("/enqueue", data={"csrf": token, "function": "add", "kwargs": '{"a": 2}', "job_id": "j1"})
    assert good.status_code == 303 and good.headers["location"].startswith("/jobs/j1")
    api = await http.post("/api/jobs", json={"function": "add", "arguments": {"a": 1}}, headers={"x-csrf-token": token})
    assert api.status_code == 201 and api.json()["enqueued"] is True
    assert await redis.zcard("arq:queue") == 2
    urgent = {"csrf": token, "function": "add", "kwargs": '{"a": 3}', "job_id": "j2", "priority": "2"}
    assert (await http.post("/enqueue", data=urgent)).status_code == 303
    assert await redis.zscore("arq:queue", "j2") < await redis.zscore("arq:queue", "j1") - 100_000
    both = await http.post("/enqueue", data={**urgent, "job_id": "j3", "defer_by_s": "5"})
    assert both.status_code == 422 and "head start for a job due now" in both.text
    assert (await http.post("/enqueue", data={**urgent, "job_id": "j4", "priority": "-1"})).status_code == 422
    assert await redis.zcard("arq:queue") == 3


async def test_hostile_values_are_escaped_and_huge_ones_cut(client: JobClient, dash: Dash) -> None:
    hostile = await client.enqueue(echo.options(defer_by=60), '<script>alert("x")</script>')
    huge = await client.enqueue(echo.options(defer_by=60), "y" * 50_000)
    _, http = dash()
    page = await http.get(f"/jobs/{hostile.job_id}", headers=HTML)
    assert "<script>alert" not in page.text and "&lt;script&gt;alert" in page.text
    cut = await http.get(f"/jobs/{huge.job_id}", headers=HTML)
    assert cut.status_code == 200 and len(cut.text) < 20_000 and "Download the whole record" in cut.text
    whole = await http.get(f"/api/jobs/{huge.job_id}")
    assert whole.json()["kwargs"]["text"] == "y" * 50_000
    missing = await http.get("/jobs/%3Cb%3Enope%3C%2Fb%3E", headers=HTML)
    assert missing.status_code == 404 and "<b>nope" not in missing.text


async def test_bulk_requeue_of_every_dead_job_matching_a_function(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker], dash: Dash
) -> None:
    running_worker(JOBS)
    await redis.set("broken", "1")
    handles = [await client.enqueue(switchable) for _ in range(3)]
    await wait_for(lambda: _count_dead(redis, 3), message="the jobs never reached the dead letters")
    await redis.delete("broken")
    _, http = dash()
    token = await _csrf(http)
    started = await http.post("/dead-letters/requeue", data={"csrf": token, "all": "yes", "function": "switchable"})
    assert started.status_code == 303
    op_page = started.headers["location"]

    async def done() -> str | None:
        text = (await http.get(op_page, headers=HTML)).text
        return text if "Done: 3 requeued" in text else None

    await wait_for(done, message="the bulk requeue never finished")
    assert [await h.result(timeout_s=10) for h in handles] == ["fixed"] * 3


async def test_bulk_progress_is_read_from_redis_by_any_dashboard_process(redis: ArqRedis, dash: Dash) -> None:
    """A bulk delete started through one dashboard process is followed to its end through another (as behind a
    load balancer): the progress of its pages is in Redis, not in the memory of the process that runs it. One whose
    process stopped reporting reads as stalled, not as running for ever."""
    total = PAGE_ROWS * 2 + 100
    await write_dead(redis, [f"dead-{i:05d}" for i in range(total)])
    _, http_a = dash()
    follower, http_b = dash()
    started = await http_a.post("/dead-letters/delete", data={"csrf": await _csrf(http_a), "all": "yes"})
    assert started.status_code == 303
    op_id = started.headers["location"].rsplit("/", 1)[1]

    async def finished() -> dict[str, object] | None:
        row: dict[str, object] = (await http_b.get(f"/api/dead-letters-ops/{op_id}")).json()
        return row if row["done"] else None

    row = await wait_for(finished, message="the other process never saw the bulk delete finish")
    assert (row["examined"], row["acted"], row["total"], row["error"]) == (total, total, total, None)
    assert await DeadLetters(redis).count() == 0
    page = await http_b.get(f"/dead-letters/ops/{op_id}", headers=HTML)
    assert f"Done: {total:,} deleted." in page.text
    assert not follower.state.dashboard.bulk._tasks, "the follower ran the operation itself"

    stale_ms = int(time.time() * 1000) - STALLED_MS - 1000
    stalled = BulkOp("0ddba11", "requeue", k.default_queue_name, None, 500, 20, total, started_ms=stale_ms,
                     updated_ms=stale_ms)  # fmt: skip
    await redis.hset(k.BULK_OP_KEY_PREFIX + stalled.op_id, mapping=stalled.fields())
    page = await http_b.get(f"/dead-letters/ops/{stalled.op_id}", headers=HTML)
    assert "Stalled after 500 of" in page.text and 'http-equiv="refresh"' not in page.text
    assert (await http_b.get("/api/dead-letters-ops/nope:x")).status_code == 404


async def _count_dead(redis: ArqRedis, n: int) -> bool:
    return await DeadLetters(redis).count() == n


def test_hasten_web_refuses_a_public_address_without_credentials() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "src.cli", "web", "--host", "0.0.0.0"], capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "JOBS_REDIS_URL": "redis://127.0.0.1:1"},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: the dashboard would listen on 0.0.0.0 with no credentials: set JOBS_DASHBOARD_TOKEN (or "
        "JOBS_DASHBOARD_USERNAME and JOBS_DASHBOARD_PASSWORD), or bind it to 127.0.0.1"
    ]


async def test_mounted_in_an_application(client: JobClient, redis: ArqRedis) -> None:
    import httpx2
    from fastapi import FastAPI

    from src.runner.dashboard import DashboardOptions, dashboard

    handle = await client.enqueue(nap.options(defer_by=60), 1)
    app = FastAPI()
    app.mount("/jobs", dashboard(redis=redis, options=DashboardOptions(jobs=tuple(JOBS))))
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        page = await http.get("/jobs/", headers=HTML)
        assert page.status_code == 200
        assert 'src="/jobs/static/dashboard.js"' in page.text and 'data-live-src="/jobs/events/overview"' in page.text
        assert (await http.get("/jobs/static/dashboard.css")).status_code == 200
        listing = await http.get("/jobs/jobs", headers=HTML)
        assert f'href="/jobs/jobs/{handle.job_id}?queue=arq%3Aqueue"' in listing.text
        aborted = await http.post(f"/jobs/jobs/{handle.job_id}/abort", data={"csrf": http.cookies["hasten_csrf"]})
        assert aborted.status_code == 303 and aborted.headers["location"].startswith(f"/jobs/jobs/{handle.job_id}?")
        assert (await http.get("/jobs/api/openapi.json")).status_code == 200


async def test_a_worker_that_missed_heartbeats_is_greyed(redis: ArqRedis, dash: Dash) -> None:
    import time

    from src.runner import constants as k
    from src.runner.worker_registry import WorkerRecord

    now_ms = int(time.time() * 1000)
    for worker_id, beat_ms in (("fresh", now_ms), ("late", now_ms - 11_000)):
        record = WorkerRecord(worker_id, k.default_queue_name, "host", 1, "1", 4, now_ms - 60_000, heartbeat_ms=beat_ms)
        await redis.set(k.HEARTBEAT_KEY_PREFIX + worker_id, record.to_json())
        await redis.zadd(k.WORKERS_KEY_PREFIX + k.default_queue_name, {worker_id: beat_ms})
    _, http = dash()
    page = (await http.get("/workers", headers=HTML)).text
    rows = {wid: row for wid in ("fresh", "late") for row in page.split("<tr") if f">{wid}</td>" in row}
    assert 'class="late"' in rows["late"] and 'class="late"' not in rows["fresh"]


async def test_no_secret_is_ever_shown(env, client: JobClient) -> None:
    import httpx2

    from src.runner.dashboard import DashboardOptions, dashboard
    from src.settings import get_settings

    env.setenv("JOBS_SIGNING_SECRET", "signing-secret-value")
    env.setenv("JOBS_DASHBOARD_TOKEN", "dashboard-token-value")
    get_settings.cache_clear()
    settings = get_settings()
    app = dashboard(settings, options=DashboardOptions.from_settings(settings, jobs=tuple(JOBS)))
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 50000))
    bearer = {"authorization": "Bearer dashboard-token-value", "accept": "text/html"}
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        handle = await client.enqueue(echo.options(defer_by=60), "https://user:pw@example.com/hook?token=abc")
        paths = ("/", "/workers", "/enqueue", "/login", "/api/queues")
        texts = [(await http.get(p, headers=bearer)).text for p in paths]
        texts.append((await http.get(f"/api/jobs/{handle.job_id}", headers=bearer)).text)
        texts.append((await http.get(f"/jobs/{handle.job_id}", headers=bearer)).text)
    await app.state.dashboard.close()  # the client it opened from the settings
    for text in texts:
        for secret in ("signing-secret-value", "dashboard-token-value", settings.redis_target(), "pw@", "token=abc"):
            assert secret not in text


async def test_pause_and_resume_a_queue_from_the_jobs_page(client: JobClient, redis: ArqRedis, dash: Dash) -> None:
    _, http = dash()
    page = await http.get("/jobs?queue=arq:queue", headers=HTML)
    assert 'data-action="pause"' in page.text and "is paused" not in page.text
    paused = await http.post("/queues/arq:queue/pause", data={"csrf": http.cookies["hasten_csrf"]})
    assert paused.status_code == 303 and await pausing.paused_since_ms(redis, "arq:queue") is not None
    page = await http.get("/jobs?queue=arq:queue", headers=HTML)
    assert "is paused since" in page.text and 'data-action="resume"' in page.text
    overview = await http.get("/api/queues")
    assert [q["paused_since_ms"] is not None for q in overview.json() if q["queue"] == "arq:queue"] == [True]
    token = {"X-CSRF-Token": http.cookies["hasten_csrf"]}
    resumed = await http.post("/api/queues/arq:queue/resume", headers=token)
    assert resumed.json() == {"queue": "arq:queue", "paused": False, "changed": True}
    assert await pausing.paused_since_ms(redis, "arq:queue") is None
    _, read_only = dash(read_only=True)
    assert 'data-action="pause"' not in (await read_only.get("/jobs", headers=HTML)).text


async def test_the_limits_page_and_api_show_limits_running_and_held_jobs(
    client: JobClient, dash: Dash, running_worker: Callable[..., Worker]
) -> None:
    from tests.limit_jobs import one_per_customer

    _, http = dash()
    assert "No limits defined yet" in (await http.get("/limits", headers=HTML)).text
    running_worker([one_per_customer])
    for _ in range(3):
        await client.enqueue(one_per_customer, "acme", 30)

    async def held() -> list[dict[str, object]] | None:
        rows = (await http.get("/api/limits")).json()
        return rows if any(r["held"] == 2 for r in rows) else None

    rows = await wait_for(held, 10)
    assert rows == [
        {"queue": "arq:queue", "function": "one_per_customer", "key": None, "max_concurrency": 1, "rate": None,
         "declared": None, "running": 1, "held": 2},
        {"queue": "arq:queue", "function": "one_per_customer", "key": "acme", "max_concurrency": 1, "rate": None,
         "declared": None, "running": 1, "held": 2},
    ]  # fmt: skip
    page = (await http.get("/limits", headers=HTML)).text
    assert ">one_per_customer</td>" in page and ">acme</td>" in page and '<td class="num">2</td>' in page
