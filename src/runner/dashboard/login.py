"""Signing in with the token from a browser: a form that sets the session cookie, and signing out."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .auth import SESSION_COOKIE, _equal, form_fields, require_same_origin, session_value
from .options import DashboardOptions
from .render import page, prefix

router = APIRouter(include_in_schema=False)


def _safe_next(request: Request, target: str) -> str:
    """Only a path of this dashboard: never an open redirect to another site."""
    base = prefix(request)
    return target if target.startswith(base + "/") and not target.startswith("//") else base + "/"


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "") -> HTMLResponse:
    return page(request, "login.html", nav="", next=_safe_next(request, next), error="")


@router.post("/login", dependencies=[Depends(require_same_origin)], response_model=None)
async def login(request: Request) -> Response:
    options: DashboardOptions = request.app.state.dashboard.options
    fields = await form_fields(request)
    given, target = fields.get("token", [""])[0], _safe_next(request, fields.get("next", [""])[0])
    if options.token is None or not _equal(given, options.token.get_secret_value()):
        return page(request, "login.html", 401, nav="", next=target, error="That token is not right.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, session_value(options.token), httponly=True, samesite="strict", path=prefix(request) + "/",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


@router.post("/logout", dependencies=[Depends(require_same_origin)])
async def logout(request: Request) -> RedirectResponse:
    response = RedirectResponse(prefix(request) + "/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=prefix(request) + "/")
    return response
