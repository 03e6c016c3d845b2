"""``hasten workflow <id>`` and a dead step's ``hasten dlq requeue``, as an operator runs them: the installed command
in a subprocess, against a real Redis and a real worker."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import pytest

from src.runner import DeadLetters, JobClient, WorkflowFailed, chain, chord, group, json_rows
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from src.runner.workflow_ids import step_id
from tests.test_cli import _hasten
from tests.waiting import wait_for
from tests.workflow_jobs import ALL, add, plus_one, refuse, total

pytestmark = pytest.mark.timeout(60)


async def test_workflow_shows_each_step_and_its_json_is_the_apis_row(
    env: pytest.MonkeyPatch, redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(chord(group([add.s(1, 2), add.s(3, 4)]), total.s()))
    assert await handle.result(timeout_s=10) == 10
    shown = await asyncio.to_thread(_hasten, redis_server.url, "workflow", handle.workflow_id)
    assert shown.returncode == 0, shown.stderr
    assert f"workflow {handle.workflow_id}: complete (3 steps" in shown.stdout
    lines = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line.strip()[:1].isdigit()}
    assert lines["2"][1:5] == ["total", "done", step_id(handle.workflow_id, 2), "0,1"] and lines["2"][5] == "10"
    assert lines["0"][1:5] == ["add", "done", step_id(handle.workflow_id, 0), "-"]

    as_json = await asyncio.to_thread(_hasten, redis_server.url, "workflow", handle.workflow_id, "--json")
    row = json.loads(as_json.stdout)
    assert row == await json_rows.read_workflow_row(client, handle.workflow_id)
    assert [(s["function"], s["status"], s["after"], s["result"]) for s in row["steps"]] == [
        ("add", "done", [], 3), ("add", "done", [], 7), ("total", "done", [0, 1], 10),
    ]  # fmt: skip

    big = await client.enqueue_workflow(chord(group([add.s(i, 1) for i in range(30)]), total.s()))
    fan_in = await asyncio.to_thread(_hasten, redis_server.url, "workflow", big.workflow_id)
    assert re.search(rf"{re.escape(step_id(big.workflow_id, 30))}\s+0-29\s", fan_in.stdout)  # inputs, briefly

    missing = await asyncio.to_thread(_hasten, redis_server.url, "workflow", "wf:" + "0" * 32)
    assert missing.returncode == 1 and "not found" in missing.stderr


async def test_a_failed_workflow_names_its_step_and_its_dead_step_is_not_requeued(
    env: pytest.MonkeyPatch, redis_server: RedisServer, client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    running_worker(ALL)
    handle = await client.enqueue_workflow(chain(plus_one.s(1), refuse.s(), plus_one.s()))
    with pytest.raises(WorkflowFailed):
        await handle.result(timeout_s=10)
    shown = await asyncio.to_thread(_hasten, redis_server.url, "workflow", handle.workflow_id)
    assert f"workflow {handle.workflow_id}: failed" in shown.stdout
    assert "step 1 refuse()" in shown.stdout and "cancelled" in shown.stdout

    dead = step_id(handle.workflow_id, 1)
    await wait_for(lambda: DeadLetters(client.redis).get(dead), 5)
    requeued = await asyncio.to_thread(_hasten, redis_server.url, "dlq", "requeue", dead)
    assert requeued.returncode == 1
    assert f"error: job {dead} is step 1 of workflow {handle.workflow_id}" in " ".join(requeued.stderr.split())
    assert await DeadLetters(client.redis).get(dead) is not None
