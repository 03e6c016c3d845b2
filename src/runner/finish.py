"""Writing outcomes: a job's outcome leaves the process in the same step of the event loop in which its function
returned, and what cannot go at once is group-committed (``scripts/finish.lua``, one Lua call per batch).

There is no timer. A job's own task sends its outcome (:meth:`Finisher.write`) before it first waits, when fewer
than ``MAX_WRITES_IN_FLIGHT`` writes are in flight (each on its own connection): a crash loses only outcomes whose
bytes had not left, not a turn of the loop or a write's round trip (the duplicate window). Beyond that many writes
outcomes are pending, and the next free writer takes them all in one call, so batches grow with load.
Two outcomes of one job are never in flight together: the second waits for the first's write, so they cannot
land swapped. While Redis is away (an outage: see ``outage.py``), outcomes stay in memory and one writer retries
them when it is back; an outcome Redis refuses is retried on its own, with an error logged each time, so it holds
up no other. A crash loses what was not yet written; those jobs run again after their lease, which at-least-once
allows. The script writes an outcome only while the job's lease is this worker's (or gone): one that lost its
lease never clobbers the new owner's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from redis.asyncio import Redis

from . import constants as k
from . import durations
from .outage import REDIS_DOWN, Outage, RedisHealth, is_refusal
from .scripts import script

if TYPE_CHECKING:
    from .failures import JobFailure

logger = logging.getLogger("hasten.worker")


#: how a try ends; each try ends in exactly one, so that started = sum of these + running:
#: - ``complete``: the job succeeded;
#: - ``failed``: the try failed and the job runs again after its backoff (a failed try with tries left);
#: - ``retried``: the job was put back without failing: it asked to run again (arq's ``Retry``), or the worker's
#:   shutdown interrupted it (the try not spent);
#: - ``aborted``: aborted on request;
#: - ``dead``: failed for good (tries exhausted, a permanent error, a refused payload): in the dead-letter queue.
OUTCOME_KINDS = ("complete", "failed", "retried", "aborted", "dead")


@dataclass(slots=True)
class Outcome:
    """What to write for one job: ``done`` (result kept for ``number`` ms, -1 forever), ``again`` (back in the
    queue, due at ``number`` ms) or ``back`` (as ``again``, giving back the try: interrupted by a shutdown)."""

    raw_id: bytes
    action: Literal["done", "again", "back"]
    result: bytes
    number: int
    #: the dead-letter record of a job that failed for good
    dead: bytes = b""
    #: a final outcome that is a success
    succeeded: bool = False
    #: for cron jobs only (the entry's state records it): how the run ended, and how long it took
    run_status: str = ""
    run_ms: int = 0
    #: a try that ran the job's function: which, and how long it took (the per-minute durations, ``durations.py``)
    function: str = ""
    duration_s: float | None = None
    #: a failed try or a dead letter, for the failure hooks and the trace (not written)
    failure: JobFailure | None = None
    #: the final outcome of a workflow step: its value as JSON, or its error (``workflow_steps.py``); the finish
    #: script advances the workflow with it
    workflow: bytes = b""

    @property
    def kind(self) -> str:
        """How the try ended, one of :data:`OUTCOME_KINDS` (the per-minute counts ``jobs:outcomes:`` and the
        ``outcome`` label of the metrics): each try ends in exactly one."""
        if self.action == "done":
            return "complete" if self.succeeded else "dead" if self.dead else "aborted"
        # 'again' with the failed try's error recorded is a failure; without one, the job asked; 'back' is a shutdown
        return "failed" if self.action == "again" and self.result else "retried"


class Finisher:
    def __init__(
        self, redis: Redis, queue_name: str, owner: str, dlq_retention_ms: int, health: RedisHealth | None = None,
        abort_set: str = k.abort_jobs_ss, lease_ms: int = int(k.DEFAULT_LEASE_S * 1000),
    ) -> None:  # fmt: skip
        self._script = script(redis, "finish")
        #: finish.lua's KEYS[8]: a job of a limited function gives its slot back (limits.py)
        self._limits = k.LIMITS_KEY_PREFIX + queue_name
        #: how long a job promoted to a freed slot keeps it until a worker claims it
        self._lease_ms = lease_ms
        self._keys = [queue_name, k.WAKE_KEY_PREFIX + queue_name, k.DLQ_KEY_PREFIX + queue_name]
        #: finish.lua's KEYS[6], after each write's two per-minute hashes
        self._abort_set = abort_set
        #: finish.lua's KEYS[7]: where ended jobs are announced to waiting clients (result_waiters.py)
        self._done_channel = k.DONE_CHANNEL_PREFIX + queue_name
        self._outcomes_prefix = f"{k.OUTCOMES_KEY_PREFIX}{queue_name}:"
        self._durations_prefix = f"{k.DURATIONS_KEY_PREFIX}{queue_name}:"
        self._owner = owner
        self._dlq_retention_ms = dlq_retention_ms
        self._pending: list[Outcome] = []
        self._writers: set[asyncio.Task[None]] = set()
        #: a writer was started and has not taken its batch yet: later outcomes of this turn join it
        self._starting = False
        #: ids whose outcome is in a write in flight: a later outcome of the same job waits for it
        self._in_flight: set[bytes] = set()
        #: one writer waits out an outage; the others stop, leaving their outcomes pending for it
        self._retrying = False
        #: writes in flight, from writers and from jobs' own tasks; set while none is
        self._sending = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._outage = Outage("writing job outcomes", health)

    def __len__(self) -> int:
        """Outcomes not yet written."""
        return len(self._pending)

    def add(self, outcome: Outcome) -> None:
        """Write ``outcome`` from a writer task (in the next turn of the loop): what cannot wait for its caller."""
        self._pending.append(outcome)
        if self._may_start():
            self._start_writer()

    async def write(self, outcome: Outcome) -> None:
        """Write ``outcome`` from the calling task (the job's own): when a write may start, it is sent, with what else
        is pending, before this coroutine first waits; else it is pending as with :meth:`add`. Errors are not
        raised: the outcome stays pending for a writer, which rides out an outage."""
        self._pending.append(outcome)
        if not self._may_start() or self._outage.failures:
            if self._may_start():
                self._start_writer()
            return
        batch = self._take()
        if batch:
            with contextlib.suppress(*REDIS_DOWN):
                await self._send(batch)
        if self._pending and not self._writers and self._may_start():
            self._start_writer()  # what came meanwhile, or what the failed write left

    def _may_start(self) -> bool:
        return not self._starting and not self._retrying and self._sending < k.MAX_WRITES_IN_FLIGHT

    def _start_writer(self) -> None:
        self._starting = True
        writer = asyncio.create_task(self._write_loop())
        self._writers.add(writer)
        writer.add_done_callback(self._writers.discard)

    def _take(self) -> list[Outcome]:
        """The pending outcomes whose job has no outcome in flight (in order); the others stay pending."""
        pending, self._pending = self._pending, []
        if not self._in_flight:
            return pending
        batch: list[Outcome] = []
        for outcome in pending:
            (self._pending if outcome.raw_id in self._in_flight else batch).append(outcome)
        return batch

    async def _send(self, batch: list[Outcome]) -> None:
        """One write of ``batch``; on any error (or a cancel) the batch is pending again, first in line, and the
        error raised: outcomes are only dropped once written (Redis restarting, full, a short outage)."""
        ids = {o.raw_id for o in batch}
        self._in_flight |= ids
        self._sending += 1
        self._quiet.clear()
        try:
            await self._write(batch)
        except BaseException:
            self._pending[:0] = batch
            raise
        else:
            self._outage.ok()
        finally:
            self._in_flight -= ids
            self._sending -= 1
            if not self._sending:
                self._quiet.set()

    async def _write_loop(self) -> None:
        self._starting = False
        while batch := self._take():
            try:
                await self._send(batch)
            except REDIS_DOWN as e:
                if is_refusal(e) and len(batch) > 1:
                    del self._pending[: len(batch)]
                    await self._write_one_by_one(batch)
                    continue
                if self._retrying:
                    return
                self._retrying = True
                try:
                    await self._outage.failed(e)
                finally:
                    self._retrying = False

    async def _write(self, batch: list[Outcome]) -> None:
        now_ms = int(time.time() * 1000)
        # counted up here, so the script sends one HINCRBY per distinct (function, bucket) of the batch
        timed = durations.fields_of((o.function, o.duration_s) for o in batch if o.duration_s is not None)
        args: list[bytes | str | int] = [
            k.MAX_WAKE_TOKENS, now_ms, self._dlq_retention_ms, self._owner, k.OUTCOMES_TTL_MS, k.DURATIONS_TTL_MS,
            len(timed), self._lease_ms, *(item for pair in timed.items() for item in pair),
        ]  # fmt: skip
        for o in batch:
            args += [o.raw_id, o.action, o.result, o.number, o.dead, o.run_status, o.run_ms, o.kind, o.workflow]
        minute = now_ms // 60_000
        keys = [*self._keys, f"{self._outcomes_prefix}{minute}", f"{self._durations_prefix}{minute}", self._abort_set,
                self._done_channel, self._limits]  # fmt: skip
        for raw_id in await self._script(keys=keys, args=args):
            logger.info(
                "job %s: outcome not written: its lease was lost, the job is another worker's now (or done)",
                raw_id.decode(errors="backslashreplace"),
            )

    async def _write_one_by_one(self, batch: list[Outcome]) -> None:
        """Redis refused the batch: write each outcome alone, so that the one it refuses holds up no other. The
        refused one stays pending and is retried (logged at ERROR each time) after a backoff."""
        refused: BaseException | None = None
        for outcome in batch:
            try:
                await self._write([outcome])
            except REDIS_DOWN as e:
                self._pending.append(outcome)
                refused = e
        if refused is not None:
            await self._outage.failed(refused)

    async def drain(self, timeout_s: float | None = None) -> int:
        """Wait until every outcome added so far is written, at most ``timeout_s``; returns how many are left."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._writers or self._pending or self._sending:
                    if self._pending and not self._writers:
                        self._start_writer()
                    # waiting does not cancel the writers when the timeout (or a cancel) ends the wait
                    if self._writers:
                        await asyncio.wait(set(self._writers))
                    else:  # only jobs' own writes are in flight
                        await self._quiet.wait()
        return len(self._pending)

    async def close(self) -> None:
        """On shutdown: write what is pending, for a bounded time; what Redis did not take is left to the leases."""
        left = await self.drain(k.SHUTDOWN_WRITE_BOUND_S)
        if left:
            logger.warning(
                "%d job outcomes could not be written (Redis unavailable); those jobs run again after their lease",
                left,
            )
