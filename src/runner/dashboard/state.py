"""The one object a dashboard app keeps: its options, its Redis client (opened on first use), its poller and its
bulk operations. Mounted apps do not get lifespan events from Starlette, so nothing here needs one to start."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import HTTPException

from ..client import JobClient
from ..worker_registry import queue_names
from .bulk import BulkOps
from .events import Poller
from .options import DashboardOptions


@dataclass
class DashboardState:
    options: DashboardOptions
    #: opens the client on first use (None when the application gave one)
    open_client: Callable[[], Awaitable[JobClient]] | None
    client_: JobClient | None = None
    #: whether the client is ours to close
    owns_client: bool = False
    poller: Poller | None = None
    bulk: BulkOps = field(default_factory=BulkOps)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def client(self) -> JobClient:
        if self.client_ is None:
            async with self._lock:
                if self.client_ is None and self.open_client is not None:
                    self.client_ = await self.open_client()
                    self.owns_client = True
        assert self.client_ is not None
        return self.client_

    async def queues(self) -> list[str]:
        """The configured queue and every queue a worker serves."""
        client = await self.client()
        return sorted({client.queue_name, *await queue_names(client.redis)})

    async def on_queue(self, queue: str | None) -> JobClient:
        """A client of ``queue`` (default: the configured one); an unknown queue is a 404, so a query string can
        never point the dashboard at a key that is not a queue."""
        client = await self.client()
        if queue is None or queue == "" or queue == client.queue_name:
            return client
        if queue not in await self.queues():
            raise HTTPException(404, f"no queue {queue!r}")
        return JobClient(client.redis, client.codec, queue_name=queue, max_payload_bytes=client.max_payload_bytes)

    async def close(self) -> None:
        if self.poller is not None:
            await self.poller.stop()
        await self.bulk.cancel_all()
        if self.owns_client and self.client_ is not None:
            await self.client_.close()
            self.client_ = None
