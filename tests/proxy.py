"""A TCP proxy on loopback that can go silent: what a vanished peer (failover, dead NAT entry) looks like.

``blackhole()`` stops forwarding on every connection open at that moment, without closing them (no FIN, no RST):
reads on the client side block for ever, exactly like a half-open connection. Connections made afterwards are
forwarded as usual, so a client that gives up on its old connections and reconnects gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Proxy:
    target_port: int
    port: int = 0
    _silenced: set[asyncio.StreamWriter] = field(default_factory=set)
    _open: set[asyncio.StreamWriter] = field(default_factory=set)
    _all: list[asyncio.StreamWriter] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def blackhole(self) -> None:
        """Existing connections go silent; new ones work."""
        self._silenced |= self._open

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, owner: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if owner in self._silenced:
                    continue  # swallowed: the peer "vanished"
                writer.write(data)
                await writer.drain()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._open.add(client_writer)
        self._all += [client_writer, server_writer]
        pipes = [
            asyncio.create_task(self._pipe(client_reader, server_writer, client_writer)),
            asyncio.create_task(self._pipe(server_reader, client_writer, client_writer)),
        ]
        self._tasks.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        if client_writer not in self._silenced:  # a silenced connection is never closed by us
            for w in (client_writer, server_writer):
                w.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Proxy]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for w in self._all:
                w.close()
            await asyncio.gather(*(w.wait_closed() for w in self._all), return_exceptions=True)
