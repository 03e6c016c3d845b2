"""``RunningJobs``: the one owner of the jobs running in this worker process.

Per job id it holds the task, the raw id, the deadline, why the worker cancelled it and whether its lease is
still ours. Everything else that acts on running jobs — the pickup loop, the deadline sweeper, the abort
watcher, the lease renewer, the graceful drain — is given this registry and goes through it, so its
invariants hold in one place:

- one running copy of a job per process: :meth:`start` refuses a job id that already runs here;
- a cancel reason lives exactly as long as its try (it is dropped with the entry when the task ends), and
  only the worker sets one: a ``CancelledError`` with no reason was raised by the job itself;
- a lease, once lost, is never renewed again (:meth:`lease_lost`), and its job id stays out of claims
  (:meth:`lost_ids`) until the running copy ends; once the job's function has returned, its outcome's write is
  what ends the lease, and what tells whether it was lost.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .claim import Claimed

#: why the worker cancelled a job's task
CancelReason = Literal["timeout", "abort", "shutdown"]


@dataclass(slots=True)
class RunningJob:
    job_id: str
    raw_id: bytes
    task: asyncio.Task[Any]
    #: monotonic time past which the sweeper cancels it; set when its function starts
    deadline: float = math.inf
    #: the job's function, known once it is decoded (``set_deadline``); read by the loop watch (``loop_watch.py``)
    function: str = ""
    cancel_reason: CancelReason | None = None
    #: the in-progress key is no longer ours (expired or taken over): never renewed again
    lease_lost: bool = False
    #: its function has returned and its task writes the outcome: nothing cancels it any more
    finishing: bool = False


class RunningJobs:
    """The jobs running in this process, by job id."""

    def __init__(self) -> None:
        self._jobs: dict[str, RunningJob] = {}
        #: set whenever a job ends (a slot is free)
        self.slot_free = asyncio.Event()
        #: jobs started here since the worker began
        self.started = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(list(self._jobs.values()))

    def job_ids(self) -> list[str]:
        return list(self._jobs)

    def get(self, job_id: str) -> RunningJob | None:
        return self._jobs.get(job_id)

    def start(self, claimed: Claimed, run: Callable[[Claimed], Coroutine[Any, Any, None]]) -> bool:
        """Run ``run(claimed)`` as this job's task; False (nothing started) when the job already runs here."""
        job_id = claimed.job_id
        if job_id in self._jobs:
            return False
        task = asyncio.create_task(run(claimed), name=f"job {job_id}")
        self._jobs[job_id] = RunningJob(job_id, claimed.raw_id, task)
        self.started += 1
        task.add_done_callback(lambda _: self._done(job_id, task))
        return True

    def _done(self, job_id: str, task: asyncio.Task[Any]) -> None:
        entry = self._jobs.get(job_id)
        if entry is not None and entry.task is task:
            del self._jobs[job_id]
        self.slot_free.set()

    def set_deadline(self, job_id: str, deadline: float, function: str = "") -> None:
        """Its function starts: the sweeper cancels it past ``deadline``."""
        entry = self._jobs[job_id]
        entry.deadline = deadline
        entry.function = function

    def cancel(self, job_id: str, reason: CancelReason) -> bool:
        """Cancel a running job for ``reason``; the first reason given stands (a timeout during a shutdown is
        still a timeout). False when no such job runs here."""
        entry = self._jobs.get(job_id)
        if entry is None or entry.task.done() or entry.finishing:
            return False
        if entry.cancel_reason is None:
            entry.cancel_reason = reason
        entry.task.cancel()
        return True

    def finishing(self, job_id: str) -> None:
        """The job's function returned (or failed): its task now writes the outcome, which no cancel may cut."""
        entry = self._jobs.get(job_id)
        if entry is not None:
            entry.finishing = True

    def cancel_all(self, reason: CancelReason) -> int:
        return sum(self.cancel(job_id, reason) for job_id in list(self._jobs))

    def cancel_reason(self, job_id: str) -> CancelReason | None:
        entry = self._jobs.get(job_id)
        return None if entry is None else entry.cancel_reason

    def past_deadline(self, now: float) -> list[str]:
        """Running jobs whose deadline has passed and that are not yet being cancelled for it."""
        return [
            e.job_id
            for e in self._jobs.values()
            if now >= e.deadline and e.cancel_reason != "timeout" and not e.finishing
        ]

    def lease_ids(self) -> list[bytes]:
        """Raw ids of the running jobs whose lease is still ours (the renewer extends these)."""
        return [e.raw_id for e in self._jobs.values() if not e.lease_lost]

    def lease_lost(self, job_id: str) -> bool:
        """Note that a job's lease is no longer ours; True the first time it is to be logged (once). Not once the
        job's function has returned: its outcome's write ends the lease (it deletes the key, on another connection
        than a renewal's, so the two cross; a retried job may be another worker's at once), and when the lease was
        in fact lost first, the finish script refuses that outcome and the finisher says so (``finish.py``, at INFO)."""
        entry = self._jobs.get(job_id)
        if entry is None or entry.lease_lost:
            return False
        entry.lease_lost = True
        return not entry.finishing

    def lost_ids(self) -> list[bytes]:
        """Raw ids of jobs running here without a lease: claims must skip them (never a second copy here)."""
        return [e.raw_id for e in self._jobs.values() if e.lease_lost]

    def tasks(self) -> list[asyncio.Task[Any]]:
        return [e.task for e in self._jobs.values()]


class TasksView:
    """arq's ``Worker.tasks`` on our worker: the running jobs' tasks by job id, read from the registry (a
    snapshot). arq's ``__init__`` assigns an empty dict; anything else would bypass the registry."""

    def __get__(self, worker: Any, owner: type | None = None) -> dict[str, asyncio.Task[Any]]:
        return {entry.job_id: entry.task for entry in worker.running}

    def __set__(self, worker: Any, value: dict[str, asyncio.Task[Any]]) -> None:
        if value:
            raise AttributeError("running jobs belong to Worker.running")
