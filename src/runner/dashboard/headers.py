"""What every response carries: security headers, the CSRF cookie for a browser that has none, and
``Server-Timing: app;dur=<ms>`` — the time from the request's arrival to the start of the answer, which a browser's
navigation timing shows beside the network's share (so a page's own cost can be read, and bounded in a test, apart
from how busy the machine running the browser is)."""

from __future__ import annotations

import secrets
import time
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import CSRF_COOKIE

#: no inline script or style anywhere (the pages use one script file and one style sheet of ours), no framing
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class ResponseHeaders:
    """The headers above on every HTTP response. Pure ASGI (a ``BaseHTTPMiddleware`` would buffer the event
    stream); the outermost of ours, so its time covers routing, access checks and the page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        cookie = _cookie(scope, CSRF_COOKIE)
        new_token = None if cookie else secrets.token_urlsafe(32)
        # the pages read it from here to put it in their forms
        scope.setdefault("state", {})["csrf"] = cookie or new_token
        path = (scope.get("root_path") or "") + "/"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in HEADERS if name not in present]
                took_ms = (time.perf_counter() - started_s) * 1000
                headers.append((b"server-timing", f"app;dur={took_ms:.1f}".encode()))
                if new_token is not None:
                    secure = "; Secure" if scope.get("scheme") == "https" else ""
                    cookie_line = f"{CSRF_COOKIE}={new_token}; Path={path}; SameSite=Strict; HttpOnly{secure}"
                    headers.append((b"set-cookie", cookie_line.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is a browser without our cookie, not an error
                return None
            if name in jar:
                return jar[name].value
    return None
