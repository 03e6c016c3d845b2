"""arq's per-job hooks — ``on_job_start``, ``on_job_end``, ``after_job_end`` — called where arq calls them.

As in arq's ``Worker.run_job``, all three get the same ctx dict: the worker's ctx plus ``job_id``, ``job_try``,
``enqueue_time`` and ``score``. ``on_job_start`` runs once the job is known to run (decoded, its function found,
tries left) and before its function; ``on_job_end`` once the outcome is decided (result or error serialized),
before it is written; ``after_job_end`` after the outcome is written to Redis. A job that never reaches its
function (expired, refused payload, unknown function, tries exhausted) calls none of them, as in arq.

``on_job_failed`` is ours: called with a :class:`~src.runner.failures.JobFailure` for every failed try and every
dead letter, those that never reached their function included (``failures.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arq.typing import StartupShutdown

from .failures import FailureHook


@dataclass(frozen=True, slots=True)
class JobHooks:
    on_job_start: StartupShutdown | None = None
    on_job_end: StartupShutdown | None = None
    after_job_end: StartupShutdown | None = None
    #: ours, not arq's: failed tries and dead letters (``failures.py``); they need no arq ctx, so they are not
    #: counted by ``bool()``, which tells the executor whether to build one
    on_job_failed: tuple[FailureHook, ...] = ()

    def __bool__(self) -> bool:
        return any((self.on_job_start, self.on_job_end, self.after_job_end))

    async def started(self, ctx: dict[Any, Any]) -> None:
        if self.on_job_start is not None:
            await self.on_job_start(ctx)

    async def ended(self, ctx: dict[Any, Any]) -> None:
        if self.on_job_end is not None:
            await self.on_job_end(ctx)

    async def written(self, ctx: dict[Any, Any]) -> None:
        if self.after_job_end is not None:
            await self.after_job_end(ctx)
