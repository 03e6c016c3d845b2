"""Real servers on loopback for the tests: an HTTP receiver (uvicorn) and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from src.runner.redis_server import free_port


@dataclass
class HttpReceiver:
    """Answers POSTs with the next status in ``statuses`` (then 200) and records what it received."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        request = Request(scope, receive)
        self.requests.append((dict(request.headers), await request.body()))
        status = self.statuses.pop(0) if self.statuses else 200
        await PlainTextResponse(f"status {status}", status_code=status)(scope, receive, send)


@contextlib.asynccontextmanager
async def serve_http(app: Any, port: int, **config: Any) -> AsyncIterator[None]:
    """uvicorn on loopback; ``config`` goes to ``uvicorn.Config`` (e.g. ``ssl_certfile``, ``ssl_keyfile``)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **config)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


@dataclass
class SmtpRecorder:
    """aiosmtpd handler: records messages and the credentials it was sent (and whether over TLS); refuses
    recipients in ``refuse`` with 550."""

    refuse: set[str] = field(default_factory=set)
    messages: list[Envelope] = field(default_factory=list)
    #: (login, password, over TLS) of every AUTH attempt
    logins: list[tuple[str, str, bool]] = field(default_factory=list)

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login.decode(), auth_data.password.decode(), session.ssl is not None))
        return AuthResult(success=True)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 Message accepted"


@contextlib.contextmanager
def serve_smtp(handler: SmtpRecorder, tls_context: ssl.SSLContext | None = None) -> Any:
    """aiosmtpd on loopback; with ``tls_context`` it offers STARTTLS. It accepts AUTH without TLS too, so a test
    sees credentials a client would send in clear."""
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), tls_context=tls_context,
        authenticator=handler.authenticate, auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
        # a STARTTLS the client refused (an untrusted certificate) leaves the server's transport unclosed in its own
        # loop: collected here, quietly, not in whichever later test the collector happens to run in
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
