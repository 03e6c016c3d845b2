"""``Server-Timing: app;dur=<ms>`` on every response: the time from the request's arrival to the start of the answer.
A browser shows it beside the network's share (navigation timing), so a page's own cost can be read, and bounded in
a test, apart from how busy the machine running the browser is."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServerTiming:
    """Pure ASGI, as :class:`~.headers.SecurityHeaders` (an event stream's header leaves at its start, unbuffered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took_ms = (time.perf_counter() - started_s) * 1000
                timing = (b"server-timing", f"app;dur={took_ms:.1f}".encode())
                message["headers"] = [*message.get("headers", []), timing]
            await send(message)

        await self.app(scope, receive, send_timed)
