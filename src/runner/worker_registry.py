"""The worker registry: every worker process announces itself in Redis with a heartbeat, and readers (``hasten
status``, the dashboard, metrics) list the workers alive.

Each worker writes ``jobs:heartbeat:<worker id>`` (JSON: host, pid, version, queue, concurrency, start time, running
job ids, counters, the heartbeat's time) every :data:`HEARTBEAT_S`, expiring after :data:`HEARTBEAT_TTL_S`, and
scores its id by the heartbeat's time in ``jobs:workers:<queue>``, so a reader finds a queue's workers without
scanning the keyspace. A worker that stops cleanly removes both; a killed one's record expires within a few
heartbeats and its id is pruned from the set by the next reader that sees it gone. One pipelined round trip per
heartbeat: an idle worker spends 0.6 commands/s on it. Each heartbeat also adds the queue to ``jobs:queues``,
the queues ``hasten status`` shows.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version

import orjson
from pydantic import TypeAdapter
from redis.asyncio import Redis

from . import constants as k

#: how often a worker writes its record
HEARTBEAT_S = 5.0
#: a record not renewed for this long is gone: the worker is dead (three missed heartbeats)
HEARTBEAT_TTL_S = 3 * HEARTBEAT_S
#: a worker's record lists at most this many running job ids (its concurrency is usually lower)
MAX_LISTED_JOB_IDS = 200


def _version() -> str:
    try:
        return version("hasten")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown"


@dataclass(slots=True)
class WorkerRecord:
    """What a worker says about itself; times are epoch milliseconds."""

    worker_id: str
    queue: str
    host: str
    pid: int
    version: str
    concurrency: int
    started_ms: int
    heartbeat_ms: int = 0
    running: int = 0
    running_ids: list[str] = field(default_factory=list)
    complete: int = 0
    failed: int = 0
    retried: int = 0
    #: the event loop's largest lag since the previous heartbeat (a job blocking the loop shows here)
    loop_lag_s: float = 0.0

    @property
    def uptime_s(self) -> float:
        return max(0.0, (self.heartbeat_ms - self.started_ms) / 1000)

    @property
    def load(self) -> float:
        """Running jobs over concurrency, 0 to 1."""
        return self.running / self.concurrency if self.concurrency else 0.0

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> WorkerRecord:
        """The record, its fields checked (``ValueError`` for one that is not JSON or has fields of wrong types:
        Redis is not trusted, and readers skip such a record rather than fail on it)."""
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a worker record is a JSON object")
        return _RECORD.validate_python({name: data[name] for name in cls.__dataclass_fields__ if name in data})


_RECORD = TypeAdapter(WorkerRecord)


@dataclass(slots=True)
class WorkerState:
    """What the heartbeat reads from the worker each time: running job ids and counters."""

    running_ids: Callable[[], list[str]]
    counters: Callable[[], tuple[int, int, int]]
    loop_lag_s: Callable[[], float] = lambda: 0.0


class Heartbeat:
    """Writes one worker's record; ``beat()`` is called often (``health.keep_recording``) and writes once per
    :data:`HEARTBEAT_S`."""

    def __init__(self, redis: Redis, worker_id: str, queue: str, concurrency: int, state: WorkerState) -> None:
        self._redis = redis
        self._state = state
        self._key = k.HEARTBEAT_KEY_PREFIX + worker_id
        self._set_key = k.WORKERS_KEY_PREFIX + queue
        self.record = WorkerRecord(
            worker_id=worker_id, queue=queue, host=socket.gethostname(), pid=os.getpid(), version=_version(),
            concurrency=concurrency, started_ms=int(time.time() * 1000),
        )  # fmt: skip
        self._last_beat = 0.0

    async def beat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat < HEARTBEAT_S:
            return
        record = self.record
        ids = self._state.running_ids()
        record.running = len(ids)
        record.running_ids = ids[:MAX_LISTED_JOB_IDS]
        record.complete, record.failed, record.retried = self._state.counters()
        record.loop_lag_s = round(self._state.loop_lag_s(), 4)
        record.heartbeat_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key, record.to_json(), px=int(HEARTBEAT_TTL_S * 1000))
            pipe.zadd(self._set_key, {record.worker_id: record.heartbeat_ms})
            pipe.sadd(k.QUEUES_KEY, record.queue)
            await pipe.execute()
        self._last_beat = now

    async def remove(self) -> None:
        """A clean stop: the worker leaves the registry at once."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._key)
            pipe.zrem(self._set_key, self.record.worker_id)
            await pipe.execute()


async def queue_names(redis: Redis) -> list[str]:
    """Every queue a worker has served (workers add theirs with each heartbeat)."""
    names: set[bytes] = await redis.smembers(k.QUEUES_KEY)  # type: ignore[misc]  # the asyncio client's
    return sorted(name.decode() for name in names)


async def live_workers(redis: Redis, queue: str) -> list[WorkerRecord]:
    """The workers of ``queue`` whose record is alive, oldest first; ids whose record expired are pruned."""
    ids = [raw.decode() for raw in await redis.zrange(k.WORKERS_KEY_PREFIX + queue, 0, -1)]
    if not ids:
        return []
    raws = await redis.mget([k.HEARTBEAT_KEY_PREFIX + worker_id for worker_id in ids])
    gone = [worker_id for worker_id, raw in zip(ids, raws, strict=True) if raw is None]
    if gone:
        await redis.zrem(k.WORKERS_KEY_PREFIX + queue, *gone)
    records = []
    for raw in raws:
        if raw is not None:
            with contextlib.suppress(ValueError):  # a record with odd fields (not written by a worker) is skipped
                records.append(WorkerRecord.from_json(raw))
    return sorted(records, key=lambda r: r.started_ms)
