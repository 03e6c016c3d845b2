"""RunningJobs, the one owner of the jobs running in a worker process: its invariants, one by one."""

from __future__ import annotations

import asyncio
import math

from src.runner.claim import Claimed
from src.runner.running import RunningJobs


def _claimed(job_id: str) -> Claimed:
    return Claimed(job_id.encode(), 0, b"", 1, False)


async def _forever(_: Claimed) -> None:
    await asyncio.sleep(3600)


async def test_one_running_copy_of_a_job() -> None:
    running = RunningJobs()
    assert running.start(_claimed("a"), _forever)
    assert not running.start(_claimed("a"), _forever)  # refused: it runs here already
    assert len(running) == 1 and "a" in running and running.started == 1
    entry = running.get("a")
    assert entry is not None and entry.deadline == math.inf and [e.job_id for e in running] == ["a"]
    running.cancel_all("shutdown")
    await asyncio.gather(*running.tasks(), return_exceptions=True)
    await asyncio.sleep(0)
    assert len(running) == 0 and running.slot_free.is_set()


async def test_the_first_cancel_reason_stands_and_dies_with_its_try() -> None:
    running = RunningJobs()
    running.start(_claimed("a"), _forever)
    running.set_deadline("a", 0.0)
    assert running.past_deadline(1.0) == ["a"]
    assert running.cancel("a", "timeout")
    assert running.past_deadline(1.0) == []  # already being cancelled for it
    assert running.cancel("a", "shutdown")
    assert running.cancel_reason("a") == "timeout"
    assert not running.cancel("nope", "abort")
    await asyncio.gather(*running.tasks(), return_exceptions=True)
    await asyncio.sleep(0)
    assert running.cancel_reason("a") is None  # gone with its entry
    assert not running.cancel("a", "abort")
    # the next try starts clean
    running.start(_claimed("a"), _forever)
    assert running.cancel_reason("a") is None
    running.cancel_all("shutdown")
    await asyncio.gather(*running.tasks(), return_exceptions=True)


async def test_a_lost_lease_is_noted_once_and_kept_out_of_renewals() -> None:
    running = RunningJobs()
    running.start(_claimed("a"), _forever)
    running.start(_claimed("b"), _forever)
    assert running.lease_lost("a") is True
    assert running.lease_lost("a") is False  # logged once
    assert running.lease_lost("nope") is False
    assert running.lease_ids() == [b"b"] and running.lost_ids() == [b"a"]
    running.cancel_all("shutdown")
    await asyncio.gather(*running.tasks(), return_exceptions=True)


async def test_a_lease_gone_while_the_outcome_is_written_is_not_reported() -> None:
    """The outcome's write ends the job's lease: a renewal that found the key gone raced with it (on another
    connection, the write landed first). Noted — not renewed again — but not a lost lease to warn about."""
    running = RunningJobs()
    running.start(_claimed("a"), _forever)
    running.finishing("a")
    assert running.lease_lost("a") is False
    assert running.lease_ids() == []
    for task in running.tasks():  # a finishing job takes no cancel of the registry's: end the stand-in directly
        task.cancel()
    await asyncio.gather(*running.tasks(), return_exceptions=True)
