"""The dashboard in real headless Chromium (Debian's ``chromium``, driven by Playwright): live counts, a failed
job opened and requeued by clicking, a running job aborted, refused requests; a screenshot of every page goes to
``test-artifacts/dashboard/`` for a person to look at."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from arq.connections import ArqRedis
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr

from src.runner import JobClient, cron
from src.runner.cron_state import register
from src.runner.dlq import DeadLetters
from src.runner.worker import Worker
from tests.dashboard.chromium import NARROW, WIDE, accept, open_page, shot
from tests.dashboard.conftest import JOBS, Served, write_dead
from tests.sample_jobs import add, echo, nap, switchable
from tests.waiting import wait_for


async def _reload_until_status(page: Page, status: str) -> None:
    async def shown() -> bool:
        await page.reload()
        return (await page.locator("[data-status]").inner_text()) == status

    await wait_for(shown, interval_s=0.1, message=f"the job page never showed {status}")


async def test_overview_counts_change_live_as_jobs_run(
    client: JobClient, running_worker: Callable[..., Worker], serve: Callable[..., Served], browser: Browser,
    artifacts: Path,
) -> None:  # fmt: skip
    running_worker(JOBS)
    async with serve() as site:
        page = await open_page(browser)
        await page.goto(site.url + "/")
        card = page.locator("article.card").first
        await expect(page.locator("[data-live-state]")).to_have_class(re.compile(r"\bon\b"))
        await expect(card.locator('[data-count="finished"]')).to_have_text("0")
        await page.evaluate("window.notReloaded = true")

        for i in range(5):
            await client.enqueue(add, i, 1)
        await client.enqueue(nap.options(defer_by=3600), 1)
        # the page changes without a reload: the server pushes the counts
        await expect(card.locator('[data-count="finished"]')).to_have_text("5")
        await expect(card.locator('[data-count="deferred"]')).to_have_text("1")
        await expect(page.locator('[data-count="workers"]')).to_have_text("1")
        assert await page.evaluate("window.notReloaded") is True
        await shot(page, artifacts, "overview")
        await page.set_viewport_size(NARROW)
        await shot(page, artifacts, "overview-narrow")
        await page.close()
        poller = site.app_state().poller
        assert poller is not None

        def idle() -> bool:
            return not poller.running

        await wait_for(idle, message="the poller kept reading for nobody")
        assert page.errors == []  # type: ignore[attr-defined]


async def test_open_a_failed_job_and_requeue_it_from_the_dead_letters(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker], serve: Callable[..., Served],
    browser: Browser, artifacts: Path,
) -> None:  # fmt: skip
    running_worker(JOBS)
    await redis.set("broken", "1")
    handle = await client.enqueue(switchable)
    await wait_for(lambda: DeadLetters(redis).get(handle.job_id), message="the job never failed for good")
    async with serve() as site:
        page = await open_page(browser)
        page.on("dialog", accept)
        await page.goto(site.url + "/dead-letters")
        row = page.locator(f'tr[data-job-id="{handle.job_id}"]')
        await expect(row).to_contain_text("Permanent")
        await shot(page, artifacts, "dead-letters")

        await row.get_by_role("link", name=handle.job_id).click()
        await expect(page.locator("h1")).to_have_text(handle.job_id)
        await expect(page.locator("pre.traceback")).to_contain_text("broken on purpose")
        await shot(page, artifacts, "job-dead")

        await redis.delete("broken")
        await page.go_back()
        await row.locator('button[data-action="requeue"]').click()
        await expect(page.locator(".notice")).to_have_text("requeued 1 of 1 dead job(s)")
        await expect(page.locator(".empty")).to_contain_text("No dead jobs")
        await shot(page, artifacts, "dead-letters-empty")
        await page.goto(f"{site.url}/jobs/{handle.job_id}")
        await _reload_until_status(page, "complete")
        await expect(page.locator("pre.value").last).to_contain_text("fixed")
        await shot(page, artifacts, "job-complete")
        assert page.errors == []  # type: ignore[attr-defined]


async def test_abort_a_running_job_by_clicking(
    client: JobClient, running_worker: Callable[..., Worker], serve: Callable[..., Served], browser: Browser,
    artifacts: Path,
) -> None:  # fmt: skip
    running_worker(JOBS)
    handle = await client.enqueue(nap, 30)
    async with serve() as site:
        page = await open_page(browser)
        page.on("dialog", accept)
        await page.goto(f"{site.url}/jobs/{handle.job_id}")
        await _reload_until_status(page, "in_progress")
        await expect(page.get_by_text("lease left")).to_be_visible()
        await shot(page, artifacts, "job-running")
        await page.locator('button[data-action="abort"]').click()
        await expect(page.locator(".notice")).to_have_text("aborted")
        assert (await client.info(handle.job_id)).error is not None
        assert page.errors == []  # type: ignore[attr-defined]


async def test_unauthenticated_and_cross_site_requests_are_refused(
    client: JobClient, serve: Callable[..., Served], browser: Browser, artifacts: Path
) -> None:
    handle = await client.enqueue(nap.options(defer_by=3600), 1)
    async with serve(token=SecretStr("correct horse")) as site:
        page = await open_page(browser)
        response = await page.goto(site.url + "/api/queues")
        assert response is not None and response.status == 401
        await page.goto(site.url + "/workers")
        await expect(page).to_have_url(re.compile(r"/login\?next=/workers$"))
        await page.get_by_label("token").fill("wrong")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator(".notice")).to_have_text("That token is not right.")
        await shot(page, artifacts, "login")
        await page.get_by_label("token").fill("correct horse")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(site.url + "/workers")
        await expect(page.locator("h1")).to_contain_text("Workers")

    async with serve() as site:  # no credentials, on loopback: the CSRF defences alone
        page = await open_page(browser)
        await page.goto(site.url + "/")  # the victim has the dashboard open (and its cookie)
        evil = (
            f'<form method="post" action="{site.url}/jobs/{handle.job_id}/abort">'
            '<input type="hidden" name="csrf" value="guessed"><button>win a prize</button></form>'
        )
        await page.route("http://evil.test/", lambda route: route.fulfill(body=evil, content_type="text/html"))
        await page.goto("http://evil.test/")
        async with page.expect_response(lambda r: r.url.endswith("/abort")) as refused:
            await page.get_by_role("button", name="win a prize").click()
        assert (await refused.value).status == 403
        await expect(page.locator(".notice")).to_contain_text("cross-site request refused")
        assert (await client.status(handle.job_id)).value == "deferred", "a cross-site POST aborted the job"


async def test_a_tour_of_every_page(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker], serve: Callable[..., Served],
    browser: Browser, artifacts: Path,
) -> None:  # fmt: skip
    running_worker(JOBS, max_jobs=40)
    long_id = "order-2026-12-01-" + "7f3a9c" * 12
    await client.enqueue(echo.options(job_id=long_id, defer_by=3600), "<b>not bold</b> " * 40)
    for i in range(3):
        await client.enqueue(nap.options(defer_by=60 * (i + 1)), 1)
    entry = cron("nightly-report", "0 3 * * *", add, kwargs={"a": 1})
    await register(redis, [entry], datetime.now(UTC) - timedelta(days=2))  # its next tick long past: overdue
    async with serve() as site:
        page = await open_page(browser)
        for name, path in [
            ("jobs", "/jobs"), ("job-long-id", f"/jobs/{long_id}"), ("enqueue", "/enqueue"), ("cron", "/cron"),
            ("workers", "/workers"), ("limits", "/limits"), ("not-found", "/jobs/nope"),
        ]:  # fmt: skip
            await page.goto(site.url + path)
            await shot(page, artifacts, name)
        await expect(page.locator("h1")).to_have_text("404")
        await page.goto(site.url + "/cron")
        await expect(page.locator("tr.overdue")).to_contain_text("overdue")
        await page.set_viewport_size(NARROW)
        for name, path in [("jobs-narrow", "/jobs"), ("job-long-id-narrow", f"/jobs/{long_id}")]:
            await page.goto(site.url + path)
            await shot(page, artifacts, name)
        # nothing wider than the window but the tables, which scroll inside their box
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        await page.goto(site.url + "/enqueue")
        await page.get_by_label("arguments").fill('{"a": "many"}')
        await page.get_by_role("button", name="Enqueue").click()
        await expect(page.locator(".notice.error")).to_contain_text("invalid arguments for add()")
        await page.get_by_label("arguments").fill('{"a": 2, "b": 3}')
        await page.get_by_role("button", name="Enqueue").click()
        await expect(page.locator("h1")).not_to_have_text("Enqueue a job")
        await _reload_until_status(page, "complete")
        assert page.errors == []  # type: ignore[attr-defined]


async def test_filter_the_jobs_by_due_time_in_the_form(
    client: JobClient, serve: Callable[..., Served], browser: Browser, artifacts: Path
) -> None:
    for i in range(4):
        await client.enqueue(echo.options(defer_by=3600 * (i + 1), job_id=f"hour-{i}"), "x")
    due_ms = {i: int(await client.redis.zscore(client.queue_name, f"hour-{i}")) for i in (1, 2)}
    # the form's fields hold whole seconds: from the second hour-1 is due in to the second after hour-2's
    low = datetime.fromtimestamp(due_ms[1] // 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    high = datetime.fromtimestamp(due_ms[2] // 1000 + 1, UTC).strftime("%Y-%m-%d %H:%M:%S")
    async with serve() as site:
        page = await open_page(browser)
        await page.goto(site.url + "/jobs")
        await expect(page.locator("td.id a")).to_have_count(4)
        await page.get_by_label("due from (UTC)").fill(low)
        await page.get_by_label("due until (UTC)").fill(high)
        await page.get_by_role("button", name="Filter").click()
        await expect(page.locator("td.id a")).to_have_text(["hour-1", "hour-2"])
        await expect(page.get_by_label("due from (UTC)")).to_have_value(low)
        await shot(page, artifacts, "jobs-time-range")
        await page.set_viewport_size(NARROW)
        await shot(page, artifacts, "jobs-time-range-narrow")
        await page.get_by_role("link", name="clear filters").click()
        await expect(page.locator("td.id a")).to_have_count(4)
        assert page.errors == []  # type: ignore[attr-defined]


async def test_delete_every_dead_job_and_watch_its_progress(
    redis: ArqRedis, serve: Callable[..., Served], browser: Browser, artifacts: Path
) -> None:
    total = 1_200  # more than two pages of 500
    await write_dead(redis, [f"dead-{i:05d}-" + "9c" * 20 for i in range(total)])
    async with serve() as site:
        page = await open_page(browser)
        page.on("dialog", accept)
        await page.goto(site.url + "/dead-letters")
        await expect(page.locator("h1 .count")).to_have_text(f"{total:,}")
        await shot(page, artifacts, "dead-letters-many", whole=False)
        await page.set_viewport_size(NARROW)
        await shot(page, artifacts, "dead-letters-narrow", whole=False)
        await page.set_viewport_size(WIDE)
        await page.get_by_role("button", name="Delete all").click()
        await expect(page.locator("[data-op-state]")).to_have_text(f"Done: {total:,} deleted.")
        await expect(page.locator("progress")).to_have_attribute("value", "100")
        await shot(page, artifacts, "bulk-op")
        assert await DeadLetters(redis).count() == 0
        await page.get_by_role("link", name="Back to the dead letters").click()
        await expect(page.locator(".empty")).to_contain_text("No dead jobs")
        assert page.errors == []  # type: ignore[attr-defined]
