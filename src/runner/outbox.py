"""Enqueue with the database commit: a transactional outbox on SQLAlchemy's asyncio engine (the ``outbox`` extra).

A job enqueued inside a database transaction would otherwise run before the commit (and see rows that are not
there yet) or after a rollback (for rows that never will be). ``await client.enqueue_in(session, spec, ...)``
instead writes the job — validated, encoded and signed exactly as :meth:`JobClient.enqueue` would send it, with
its id fixed now — as a row of :data:`outbox_table`, in the caller's transaction. A rollback drops it with the
rest. :class:`OutboxRelay` moves committed rows to Redis with the same one-round-trip enqueue script, in batches,
and deletes them in the same database transaction that read them (PostgreSQL: rows locked ``FOR UPDATE SKIP
LOCKED``, so several relays share the work; SQLite has no row locks: run one relay). A relay that dies after the
Redis write and before its delete commits sends those rows again; the job ids are the same, and the enqueue
script does not write a job whose id is queued, running or has a result, so each row reaches Redis once. (Once
a job's result has expired, a re-sent id would run again: results are kept a day by default, a relay restarts
in seconds.)

The light variant, :meth:`JobClient.enqueue_after_commit`, keeps no table: the job is sent when the session
commits (nothing on a rollback). A process that dies between the commit and the send loses the job: use it where
that is acceptable.

The relay runs in the worker (``JOBS_OUTBOX_URL``) or in a process of its own (``hasten outbox relay``).
Create the table with your migrations, or ``await conn.run_sync(outbox_table.metadata.create_all)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from .errors import SettingsInvalid

if TYPE_CHECKING:
    from .client import JobClient, _Prepared

logger = logging.getLogger("hasten.outbox")

#: the outbox: one row per job written in a transaction and not yet in Redis
outbox_table = Table(
    "hasten_outbox",
    MetaData(),
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("queue", String(255), nullable=False),
    Column("job_id", String(255), nullable=False),
    Column("function", String(255), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("score_ms", BigInteger, nullable=False),
    Column("ttl_ms", BigInteger, nullable=False),
    # the job's limit entry (limits.py: its function, and for a limit per key a newline and the key), sent with it so
    # that a relayed job is limited as one enqueued directly; NULL for a job of an unlimited function
    Column("limit_entry", Text, nullable=True),
)

#: rows one relay transaction moves
DEFAULT_BATCH = 500
#: how long an idle relay waits before it looks again
DEFAULT_IDLE_POLL_S = 0.2


async def write(session: AsyncSession, job: _Prepared, function: str) -> None:
    """One prepared job into the outbox, in ``session``'s transaction."""
    row: dict[str, Any] = {
        "queue": job.queue, "job_id": job.job_id, "function": function, "payload": job.payload,
        "score_ms": job.score_ms, "ttl_ms": job.ttl_ms,
    }  # fmt: skip
    if job.limit:  # only then: a table made before the column existed still takes every unlimited job
        row["limit_entry"] = job.limit
    await session.execute(insert(outbox_table).values(**row))


def send_after_commit(session: AsyncSession, client: JobClient, job: _Prepared) -> None:
    """Send ``job`` once ``session`` commits; forget it if it rolls back (the light variant)."""
    sync = session.sync_session
    pending: list[_Prepared] | None = sync.info.get(_PENDING)
    if pending is None:
        pending = sync.info[_PENDING] = []
        loop = asyncio.get_running_loop()
        event.listen(sync, "after_commit", lambda s: _send_pending(s, client, loop))
        event.listen(sync, "after_rollback", lambda s: s.info.get(_PENDING, []).clear())
    pending.append(job)


_PENDING = "hasten_after_commit"
#: sends in flight after a commit (a task nobody holds may be collected before it runs)
_SENDING: set[asyncio.Task[None]] = set()


def _send_pending(sync_session: Any, client: JobClient, loop: asyncio.AbstractEventLoop) -> None:
    jobs: list[_Prepared] = sync_session.info.get(_PENDING, [])
    if not jobs:
        return
    batch, jobs[:] = list(jobs), []
    task = loop.create_task(_send(client, batch))
    _SENDING.add(task)
    task.add_done_callback(_SENDING.discard)


async def _send(client: JobClient, jobs: Sequence[_Prepared]) -> None:
    try:
        await client.send_prepared(jobs)
    except Exception:
        ids = ", ".join(job.job_id for job in jobs)
        logger.exception("jobs committed but not enqueued (enqueue_after_commit): %s", ids)


class OutboxRelay:
    """Moves committed outbox rows to Redis in batches: :meth:`relay_once` for one batch, :meth:`run` for ever."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], client: JobClient, *, batch: int = DEFAULT_BATCH,
        idle_poll_s: float = DEFAULT_IDLE_POLL_S,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.client = client
        self.batch = batch
        self.idle_poll_s = idle_poll_s
        #: rows moved since this relay started
        self.relayed = 0
        self._engine: AsyncEngine | None = None
        self._columns: list[Column[Any]] | None = None

    @classmethod
    def for_url(cls, url: str, client: JobClient, **options: Any) -> OutboxRelay:
        """A relay with an engine of its own for the database at ``url`` (``postgresql+asyncpg://…``,
        ``sqlite+aiosqlite:///…``); :meth:`close` disposes of it. A URL SQLAlchemy cannot use, or a driver that is
        not installed, is one :class:`SettingsInvalid` line."""
        try:
            engine = create_async_engine(url)
        except (ImportError, ValueError, ArgumentError) as e:
            raise SettingsInvalid(f"outbox database URL: {type(e).__name__}: {e}") from None
        relay = cls(async_sessionmaker(engine, expire_on_commit=False), client, **options)
        relay._engine = engine
        return relay

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    async def relay_once(self) -> int:
        """Move up to ``batch`` rows (oldest first); how many were moved."""
        from .client import _Prepared

        async with self.sessions() as session, session.begin():
            if self._columns is None:
                self._columns = await self._readable_columns(session)
            query = select(*self._columns).order_by(outbox_table.c.id).limit(self.batch)
            rows = (await session.execute(query.with_for_update(skip_locked=True))).all()
            if not rows:
                return 0
            jobs = [
                _Prepared(r.job_id, r.queue, r.payload, r.score_ms, r.ttl_ms, getattr(r, "limit_entry", None) or "")
                for r in rows
            ]
            await self.client.send_prepared(jobs)
            moved = await self._delete(session, [r.id for r in rows])
        self.relayed += moved
        return moved

    async def _readable_columns(self, session: AsyncSession) -> list[Column[Any]]:
        """The table's columns this relay reads: all of them, or — a table created before ``limit_entry`` existed —
        the others, said once (its jobs are relayed without limits; a limited job cannot be written into it)."""
        names = await session.run_sync(
            lambda sync: {c["name"] for c in inspect(sync.connection()).get_columns(outbox_table.name)}
        )
        if "limit_entry" not in names:
            logger.warning(
                "outbox table %s has no limit_entry column: jobs are relayed without their limits; add it with "
                "ALTER TABLE %s ADD COLUMN limit_entry TEXT", outbox_table.name, outbox_table.name,
            )  # fmt: skip
        return [c for c in outbox_table.columns if c.name in names]

    async def _delete(self, session: AsyncSession, ids: list[int]) -> int:
        """Delete the sent rows; how many this transaction deleted (without row locks — SQLite — another relay
        may have sent and deleted some of them meanwhile: harmless, the ids are the same)."""
        deleted = await session.execute(delete(outbox_table).where(outbox_table.c.id.in_(ids)))
        return int(getattr(deleted, "rowcount", len(ids)))

    async def run(self) -> None:
        """Relay until cancelled: at once again after a full batch, after ``idle_poll_s`` otherwise; a failure
        (the database or Redis away) is logged once per minute and retried."""
        last_logged_s = 0.0
        while True:
            try:
                moved = await self.relay_once()
            except Exception as e:
                if time.monotonic() - last_logged_s > 60:
                    logger.warning("outbox relay: %s: %s (retrying)", type(e).__name__, e)
                    last_logged_s = time.monotonic()
                moved = 0
            if moved < self.batch:
                await asyncio.sleep(self.idle_poll_s)
