"""A workflow on the dashboard: its graph in the JSON API (``hasten workflow --json``'s row), a step's job page that
links to its workflow and shows the steps, the workflow's own page; a held step aborted by clicking fails the
workflow; a dead step's requeue is refused with the reason. Real Redis, a real worker, and real Chromium."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from arq.connections import ArqRedis
from playwright.async_api import Browser, expect

from src.runner import DeadLetters, JobClient, WorkflowFailed, chain, chord, group, json_rows
from src.runner.worker import Worker
from src.runner.workflow_ids import step_id
from tests.dashboard.chromium import accept, open_page, shot
from tests.dashboard.conftest import Dash, Served
from tests.waiting import wait_for
from tests.workflow_jobs import ALL, add, plus_one, refuse, total

HTML = {"accept": "text/html"}


async def _csrf(http) -> str:
    await http.get("/", headers=HTML)
    token: str = http.cookies["hasten_csrf"]
    return token


async def test_a_workflow_in_the_api_and_on_its_steps_pages(
    client: JobClient, running_worker: Callable[..., Worker], dash: Dash
) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(chord(group([add.s(1, 2), add.s(3, 4)]), total.s()))
    assert await handle.result(timeout_s=10) == 10
    _, http = dash()
    api = await http.get(f"/api/workflows/{handle.workflow_id}")
    assert api.status_code == 200 and api.json() == await json_rows.read_workflow_row(client, handle.workflow_id)
    assert [s["after"] for s in api.json()["steps"]] == [[], [], [0, 1]]
    fan_in = step_id(handle.workflow_id, 2)
    record = (await http.get(f"/api/jobs/{fan_in}")).json()
    assert (record["workflow_id"], record["workflow_step"]) == (handle.workflow_id, 2)

    page = await http.get(f"/jobs/{fan_in}", headers=HTML)
    assert page.status_code == 200
    assert f'href="/workflows/{quote(handle.workflow_id, safe="")}" data-workflow-link' in page.text
    assert page.text.count('<tr class="current" aria-current="true" data-step="2">') == 1
    assert all(f"/jobs/{quote(step_id(handle.workflow_id, i), safe='')}?" in page.text for i in range(3))
    own = await http.get(f"/workflows/{handle.workflow_id}", headers=HTML)
    assert own.status_code == 200 and "data-workflow-status>complete<" in own.text
    missing = "wf:" + "0" * 32
    assert (await http.get(f"/api/workflows/{missing}")).status_code == 404
    assert (await http.get(f"/workflows/{missing}", headers=HTML)).status_code == 404


async def test_a_big_fan_out_shows_its_first_steps_and_the_one_whose_page_it_is(client: JobClient, dash: Dash) -> None:
    handle = await client.enqueue_workflow(chord(group([add.s(i, 1) for i in range(150)]), total.s()))
    _, http = dash()
    fan_in = await http.get(f"/jobs/{step_id(handle.workflow_id, 150)}", headers=HTML)
    assert fan_in.status_code == 200 and fan_in.text.count("<tr data-step=") == 100
    assert '<tr class="current" aria-current="true" data-step="150">' in fan_in.text
    assert "The first 100 of 151 steps." in fan_in.text
    whole = (await http.get(f"/api/workflows/{handle.workflow_id}")).json()
    assert len(whole["steps"]) == 151 and whole["steps"][150]["after"] == list(range(150))


async def test_a_dead_steps_requeue_is_refused_with_the_reason(
    client: JobClient, redis: ArqRedis, running_worker: Callable[..., Worker], dash: Dash
) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(chain(refuse.s(1), plus_one.s()))
    try:
        await handle.result(timeout_s=10)
    except WorkflowFailed:
        pass
    dead = step_id(handle.workflow_id, 0)
    await wait_for(lambda: DeadLetters(redis).get(dead), 5)
    _, http = dash()
    token = await _csrf(http)
    refused = await http.post(f"/api/dead-letters/{dead}/requeue", headers={"x-csrf-token": token})
    assert refused.status_code == 409 and "enqueue the workflow again" in refused.json()["detail"]
    form = await http.post("/dead-letters/requeue", data={"csrf": token, "one": dead})
    assert form.status_code == 303 and "requeued+0+of+1" in form.headers["location"]
    assert "enqueue+the+workflow+again" in form.headers["location"]
    assert await DeadLetters(redis).get(dead) is not None


async def test_aborting_a_held_step_by_clicking_fails_its_workflow(
    client: JobClient, serve: Callable[..., Served], browser: Browser, artifacts: Path
) -> None:
    """No worker: the chain's second step is held. Its job page offers Abort; the workflow's page then shows it
    failed, naming the step."""
    handle = await client.enqueue_workflow(chain(plus_one.s(1), plus_one.s(), plus_one.s()))
    held = step_id(handle.workflow_id, 1)
    async with serve() as site:
        page = await open_page(browser)
        page.on("dialog", accept)
        await page.goto(f"{site.url}/jobs/{held}")
        steps = page.locator("[data-workflow-steps] tbody tr")
        await expect(steps).to_have_count(3)
        await expect(steps.nth(1).locator(".state")).to_have_text("held")
        await expect(page.locator("[data-status]")).to_have_text("held")
        await shot(page, artifacts, "workflow-step")
        await page.locator('button[data-action="abort"]').click()
        await expect(page.locator(".notice").first).to_have_text("aborted")
        await page.locator("[data-workflow-link]").click()
        await expect(page).to_have_url(re.compile(rf"/workflows/{re.escape(quote(handle.workflow_id, safe=''))}$"))
        await expect(page.locator("[data-workflow-status]")).to_have_text("failed")
        await expect(page.locator("[data-workflow-error]")).to_contain_text(
            f"step 1 plus_one() (job {held}) was aborted"
        )
        await expect(page.locator("[data-workflow-steps] .state")).to_have_text(["cancelled", "aborted", "cancelled"])
        await shot(page, artifacts, "workflow")
        assert page.errors == []  # type: ignore[attr-defined]
    assert await handle.status() == "failed"
