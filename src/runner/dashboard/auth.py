"""Who may use the dashboard, and which POSTs are really theirs.

- **Credentials**: a bearer token (``Authorization: Bearer …``, or a sign-in form that sets a session cookie) or
  HTTP basic credentials. With none set, only loopback clients are served, and only under a loopback host name
  (a DNS-rebinding page cannot pose as one) and not through a proxy (which would make everyone look local).
- **CSRF**: every action is a POST that must come from our own origin (``Origin``/``Sec-Fetch-Site``) and carry
  the double-submit token (a form field or ``X-CSRF-Token`` equal to the ``hasten_csrf`` cookie). A request
  signed with a bearer header is exempt from the token: a browser never adds that header on its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

from fastapi import HTTPException, Request
from pydantic import SecretStr

from .options import DashboardOptions, is_loopback

CSRF_COOKIE = "hasten_csrf"
SESSION_COOKIE = "hasten_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


class LoginRequired(Exception):
    """An unauthenticated browser asking for a page: sent to the sign-in form (token) or asked for basic."""


def session_value(token: SecretStr) -> str:
    """The session cookie's value: derived from the token, so the cookie never carries the token itself and
    changing the token signs everybody out."""
    return hmac.new(token.get_secret_value().encode(), b"hasten dashboard session", hashlib.sha256).hexdigest()


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def authenticated(request: Request, options: DashboardOptions) -> bool:
    """Whether the request carries valid credentials (or, with none configured, comes from loopback)."""
    if not options.has_credentials:
        client = request.client.host if request.client else ""
        proxied = any(h in request.headers for h in _PROXY_HEADERS)
        return is_loopback(client) and is_loopback(request.url.hostname or "") and not proxied
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if options.token is not None:
        if scheme.lower() == "bearer" and _equal(value.strip(), options.token.get_secret_value()):
            return True
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is not None and _equal(cookie, session_value(options.token)):
            return True
    if options.username is not None and options.password is not None and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return _equal(user, options.username) & _equal(password, options.password.get_secret_value())
    return False


def require_access(request: Request) -> None:
    """A dependency of every page and API route."""
    options: DashboardOptions = request.app.state.dashboard.options
    if authenticated(request, options):
        return
    if not options.has_credentials:
        raise HTTPException(
            403, "no dashboard credentials are set (JOBS_DASHBOARD_TOKEN), so it answers loopback clients only"
        )
    if _wants_html(request) and options.token is not None:
        raise LoginRequired
    headers = {"WWW-Authenticate": 'Basic realm="hasten"'} if options.username is not None else {}
    raise HTTPException(401, "sign in: a bearer token or basic credentials", headers=headers)


def _wants_html(request: Request) -> bool:
    """A browser asking for a page (the API answers 401 to browsers too)."""
    api = request.url.path.startswith(str(request.scope.get("root_path", "")).rstrip("/") + "/api/")
    return request.method == "GET" and "text/html" in request.headers.get("accept", "") and not api


async def form_fields(request: Request) -> dict[str, list[str]]:
    """The urlencoded body of a POST (read once; the forms are small and carry no files)."""
    cached: dict[str, list[str]] | None = getattr(request.state, "form_fields", None)
    if cached is None:
        cached = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            cached = parse_qs((await request.body()).decode(errors="replace"), keep_blank_values=True)
        request.state.form_fields = cached
    return cached


async def require_same_origin(request: Request) -> None:
    """A dependency of every action: the POST came from one of our pages (or a script with a bearer token)."""
    origin = request.headers.get("origin")
    # the host alone is compared: behind a proxy that ends TLS the request arrives as http but the browser's origin
    # is https; a proxy that rewrites Host says the original in X-Forwarded-Host (a header no cross-site form sets)
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")} - {None}
    if origin is not None and urlsplit(origin).netloc not in hosts:
        raise HTTPException(403, "cross-site request refused (Origin is not this dashboard)")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(403, "cross-site request refused (Sec-Fetch-Site)")
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    cookie = request.cookies.get(CSRF_COOKIE)
    given = request.headers.get(CSRF_HEADER) or (await form_fields(request)).get(CSRF_FIELD, [""])[0]
    if not cookie or not given or not _equal(given, cookie):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
