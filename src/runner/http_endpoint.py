"""A small HTTP server for ``/metrics``, ``/livez`` and ``/readyz``, running in an asyncio event loop.

Why ``asyncio.start_server`` rather than prometheus-client's ``start_http_server`` or an ASGI app under uvicorn:
- **liveness must mean that the worker's event loop answers.** A handler in the loop proves it; prometheus-client's
  server runs in a thread, which answers while a job blocks the loop;
- **memory and imports**: a worker does not import uvicorn or FastAPI for three routes (nor anything when its
  endpoint is off: ``monitoring.py`` imports this module only then);
- Prometheus and probes send one GET per connection: HTTP/1.0-style answers with ``Connection: close`` are all
  they need. Requests are bounded (size and time), so a slow or hostile client holds one small task at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

logger = logging.getLogger("hasten.metrics")

#: a request (line and headers) must arrive within this long, and fit in this many bytes per line
_REQUEST_TIMEOUT_S = 5.0
_LINE_LIMIT_BYTES = 8192
_MAX_HEADER_LINES = 100
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT


Route = Callable[[], Awaitable[Response]]


class Endpoint:
    """Serves ``routes`` (path → handler) on ``host:port`` (port 0: a free one, see :attr:`port`)."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> Endpoint:
        self._server = await asyncio.start_server(self._serve, host, port, limit=_LINE_LIMIT_BYTES)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # a scrape in progress finishes, a stuck client does not hold us
                    await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response, head_only = await self._answer(reader)
            head = (
                f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}\r\n"
                f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if head_only else response.body))
            async with asyncio.timeout(_REQUEST_TIMEOUT_S):
                await writer.drain()
        except (OSError, TimeoutError, ValueError):  # the client went away, or sent too long a line
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[Response, bool]:
        async with asyncio.timeout(_REQUEST_TIMEOUT_S):
            request_line = await reader.readline()
            for _ in range(_MAX_HEADER_LINES):  # headers are read and ignored
                if (await reader.readline()).strip() == b"":
                    break
        parts = request_line.decode("latin-1").split()
        if len(parts) < 2:
            return Response(405, b"a GET request is expected\n"), False
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n"), False
        route = self._routes.get(target)
        if route is None:
            return Response(404, f"not found; try {', '.join(sorted(self._routes))}\n".encode()), method == "HEAD"
        try:
            return await route(), method == "HEAD"
        except Exception:
            logger.exception("metrics endpoint: %s failed", target)
            return Response(500, b"internal error (logged)\n"), method == "HEAD"
