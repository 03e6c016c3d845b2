"""The dead-letter queue: jobs that failed for good, kept for inspection, requeue or purge.

A job goes here when it exhausted its tries, failed permanently (``Permanent``, invalid arguments or result,
a timeout with no tries left), or could not be run at all (undecodable or unsigned payload, unknown function,
expired before it ran). The worker writes the record in the same Lua call that finishes the job
(``scripts/finish.lua``). Records live ``dlq_retention_s`` (14 days by default); nothing else removes them
but :meth:`DeadLetters.purge`. Aborted jobs are not dead: somebody asked for that.
"""

from __future__ import annotations

import base64
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import TypeAdapter
from redis.asyncio import Redis

from . import constants as k
from .cluster_pool import is_cluster_client
from .codec import describe_exception
from .errors import RequeueRefused
from .redact import mask_arguments, redact_text, redact_value
from .scripts import script
from .workflow_ids import step_of

if TYPE_CHECKING:
    from .claim import Claimed

#: dead jobs read per round trip by the bulk operations
PAGE_ROWS = 500
#: ``progress(examined, acted, total)``: called after each page of a bulk operation; one that returns an awaitable
#: (it writes the progress somewhere, as the dashboard's does to Redis) is awaited before the next page
Progress = Callable[[int, int, int], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class DeadJob:
    job_id: str
    queue: str
    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    reason: str
    error_type: str
    error_message: str
    traceback: str
    tries: int
    enqueued_at_ms: int
    started_at_ms: int
    failed_at_ms: int
    #: the job exactly as it was queued (base64), what requeue puts back; unlike ``args`` and ``kwargs`` it is
    #: not redacted, so it is not for display
    payload_b64: str

    @classmethod
    def from_json(cls, raw: bytes, job_id: str = "?") -> DeadJob:
        """The record, its fields checked; one that cannot be read (not written by a worker, or altered) comes
        back as an :meth:`unreadable` record of ``job_id``, so listings show it and it can be purged."""
        try:
            data = orjson.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("a dead-letter record is a JSON object")
            return _DEAD_JOB.validate_python(data)
        except ValueError as e:  # orjson's and pydantic's errors are ValueErrors
            return cls.unreadable(job_id, str(e).splitlines()[0])

    @classmethod
    def unreadable(cls, job_id: str, why: str) -> DeadJob:
        """A stand-in for a record that cannot be read: no payload, so it cannot be requeued, only purged."""
        return cls(job_id, "?", "?", [], {}, "unreadable record", "ValueError", why, "", 0, 0, 0, 0, "")


_DEAD_JOB = TypeAdapter(DeadJob)


def dead_letter(claimed: Claimed, job: Any, queue: str, start_ms: int, error: BaseException, reason: str) -> bytes:
    """The record of a job that failed for good (``job`` is execute's decoded view of it).

    What people read (arguments, error, traceback) has URL credentials and query values redacted, and the
    arguments the job redacts (``job.redact``, from ``@job(redact=...)``) masked; the payload that a requeue puts
    back is kept as it was queued.
    """
    kwargs = mask_arguments(job.kwargs, getattr(job, "redact", ()))
    described = describe_exception(error)
    return orjson.dumps({
        "job_id": claimed.job_id, "queue": queue, "function": job.function, "args": redact_value(list(job.args)),
        "kwargs": redact_value(kwargs), "reason": reason, "error_type": described["type"],
        "error_message": redact_text(described["message"]),
        "traceback": redact_text("".join(traceback.format_exception(error))) if error.__traceback__ else "",
        "tries": job.job_try, "enqueued_at_ms": job.enqueue_time_ms, "started_at_ms": start_ms,
        "failed_at_ms": int(time.time() * 1000), "payload_b64": base64.b64encode(claimed.payload).decode(),
    }, default=repr)  # fmt: skip


def _refuse_step(job_id: str) -> None:
    found = step_of(job_id)
    if found is not None:
        workflow_id, index = found
        raise RequeueRefused(
            f"job {job_id} is step {index} of workflow {workflow_id}, which failed when this step died: requeued "
            "alone it would run without advancing the workflow; enqueue the workflow again (and purge this job)"
        )


class DeadLetters:
    """List, show, requeue and purge the dead jobs of one queue."""

    def __init__(self, redis: Redis, queue_name: str = k.default_queue_name) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self._key = k.DLQ_KEY_PREFIX + queue_name
        self._requeue = script(redis, "requeue")

    async def count(self) -> int:
        return int(await self.redis.zcard(self._key))

    async def page(self, offset: int = 0, limit: int = 50) -> list[DeadJob]:
        """Newest first, a page at a time."""
        ids = await self.redis.zrevrange(self._key, offset, offset + limit - 1)
        if not ids:
            return []
        raws = await self.redis.mget([k.DLQ_ENTRY_KEY_PREFIX + i.decode() for i in ids])
        return [DeadJob.from_json(raw, i.decode()) for i, raw in zip(ids, raws, strict=True) if raw is not None]

    async def get(self, job_id: str) -> DeadJob | None:
        raw = await self.redis.get(k.DLQ_ENTRY_KEY_PREFIX + job_id)
        return None if raw is None else DeadJob.from_json(raw, job_id)

    async def requeue(self, job_id: str) -> bool:
        """Put the job back in its queue as it was first enqueued (tries start again from 1). A workflow's step is
        refused (:class:`RequeueRefused`): it stays dead, for a purge."""
        _refuse_step(job_id)
        dead = await self.get(job_id)
        if dead is None or not dead.payload_b64:  # an unreadable record has nothing to put back
            return False
        return bool(await self._requeue(keys=self._requeue_keys(dead.job_id), args=self._requeue_args(dead)))

    def _requeue_keys(self, job_id: str) -> list[str]:
        job_keys = (
            k.job_key_prefix, k.result_key_prefix, k.retry_key_prefix, k.in_progress_key_prefix,
            k.TRY_ERRORS_KEY_PREFIX, k.PROGRESS_KEY_PREFIX, k.DLQ_ENTRY_KEY_PREFIX,
        )  # fmt: skip
        return [self.queue_name, self._key, k.WAKE_KEY_PREFIX + self.queue_name, *(p + job_id for p in job_keys)]

    def _requeue_args(self, dead: DeadJob) -> list[bytes | str | int]:
        payload = base64.b64decode(dead.payload_b64)
        return [dead.job_id, int(time.time() * 1000), k.EXPIRES_EXTRA_MS, payload, k.MAX_WAKE_TOKENS]

    async def requeue_all(self, function: str | None = None, progress: Progress | None = None) -> int:
        """Requeue every dead job (of ``function``, if given), oldest first, a page at a time; returns how many."""

        async def requeue_page(page: list[DeadJob]) -> int:
            async with self.redis.pipeline(transaction=False) as pipe:
                for dead in page:
                    if not dead.payload_b64 or step_of(dead.job_id) is not None:  # stays, for a purge
                        continue
                    await self._requeue(
                        keys=self._requeue_keys(dead.job_id), args=self._requeue_args(dead), client=pipe
                    )
                return sum(await pipe.execute())

        return await self._each_page(function, requeue_page, progress, orphans=None)

    async def purge(self, job_id: str) -> bool:
        # both keys are in the queue's slot (the id carries its tag): one node's MULTI, or on a cluster one pipeline
        # to that node, where the entry is deleted after its index: cut between, it expires on its own
        async with self.redis.pipeline(transaction=not is_cluster_client(self.redis)) as tx:
            tx.zrem(self._key, job_id)
            tx.delete(k.DLQ_ENTRY_KEY_PREFIX + job_id)
            removed, _ = await tx.execute()
        return bool(removed)

    async def purge_all(self, function: str | None = None, progress: Progress | None = None) -> int:
        """Delete every dead job (of ``function``, if given), a page at a time; returns how many."""

        async def purge_page(ids: list[str]) -> int:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self._key, *ids)
                pipe.delete(*[k.DLQ_ENTRY_KEY_PREFIX + i for i in ids])
                removed, _ = await pipe.execute()
            return int(removed)

        async def purge_jobs(page: list[DeadJob]) -> int:
            return await purge_page([d.job_id for d in page])

        return await self._each_page(function, purge_jobs, progress, orphans=purge_page)

    async def _each_page(
        self,
        function: str | None,
        act: Callable[[list[DeadJob]], Awaitable[int]],
        progress: Progress | None,
        *,
        orphans: Callable[[list[str]], Awaitable[int]] | None,
    ) -> int:
        """Act on the dead jobs matching ``function``, oldest first, one page of :data:`PAGE_ROWS` in memory at a
        time. Jobs acted on leave the dead-letter queue; the others are stepped over, and so are ids whose record
        expired unless ``orphans`` takes them out. ``progress(examined, acted, total)`` after each page."""
        total = await self.count()
        kept = examined = acted = 0
        while ids := [i.decode() for i in await self.redis.zrange(self._key, kept, kept + PAGE_ROWS - 1)]:
            raws = await self.redis.mget([k.DLQ_ENTRY_KEY_PREFIX + i for i in ids])
            page = [DeadJob.from_json(raw, i) for i, raw in zip(ids, raws, strict=True) if raw is not None]
            matching = [d for d in page if function is None or d.function == function]
            done = await act(matching) if matching else 0
            expired = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if orphans is not None and expired:
                await orphans(expired)
                kept -= len(expired)
            acted += done
            examined += len(ids)
            kept += len(ids) - done
            if progress is not None and (reported := progress(examined, acted, total)) is not None:
                await reported
        return acted
