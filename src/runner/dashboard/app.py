"""``dashboard(...)``: the FastAPI app to mount (``app.mount("/jobs", dashboard(settings))``) or serve alone."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from arq.connections import ArqRedis
from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ..client import JobClient
from ..job import JobSpec
from . import api, login, pages
from .auth import LoginRequired
from .events import Poller
from .headers import ResponseHeaders
from .options import DashboardOptions, DashboardSettings
from .render import HERE, page, prefix
from .state import DashboardState


def dashboard(
    settings: DashboardSettings | None = None,
    *,
    redis: ArqRedis | None = None,
    options: DashboardOptions | None = None,
    jobs: Sequence[JobSpec[Any, Any]] | None = None,
) -> FastAPI:
    """The dashboard as an app of its own.

    Give the project's ``settings`` (it connects to their Redis on first use and closes it at shutdown when it is
    served alone), or a ``redis`` pool you own with ``options``. ``jobs``: the registered jobs the enqueue form
    offers (default: none, or those in ``options``).
    """
    if options is None:
        options = DashboardOptions.from_settings(settings) if settings is not None else DashboardOptions()
    if jobs is not None:
        options = DashboardOptions(**{**_fields(options), "jobs": tuple(jobs)})
    state = DashboardState(options, None)
    if redis is not None:
        state.client_ = JobClient(
            redis, options.codec, queue_name=options.queue_name, max_payload_bytes=options.max_payload_bytes
        )
    elif settings is not None and hasattr(settings, "open_client"):
        state.open_client = settings.open_client
    else:
        raise TypeError("dashboard() needs settings (with open_client) or a redis pool")

    base = ""

    async def read_live() -> str:
        return await pages.overview_html(state, state.poller.render_base if state.poller else base)

    state.poller = Poller(read_live)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await state.close()

    app = FastAPI(
        title=f"{options.title} dashboard", lifespan=lifespan, openapi_url="/api/openapi.json", docs_url=None,
        redoc_url=None,  # the interactive docs load their scripts from a CDN, which the CSP (rightly) refuses
    )  # fmt: skip
    app.state.dashboard = state
    app.add_middleware(ResponseHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(login.router)
    app.include_router(pages.router)
    app.include_router(api.router)
    if not options.read_only:
        app.include_router(pages.actions)
        app.include_router(api.actions)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(HTTPException, _http_error)
    return app


def _fields(options: DashboardOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in DashboardOptions.__dataclass_fields__}


async def _to_login(request: Request, _: Exception) -> Response:
    return RedirectResponse(f"{prefix(request)}/login?next={request.url.path}", status_code=303)


async def _http_error(request: Request, error: Exception) -> Response:
    """Errors as a page for a browser, as JSON (``{"detail": ...}``) for everything else."""
    assert isinstance(error, HTTPException)
    if "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(f"{prefix(request)}/api"):
        shown = page(request, "error.html", error.status_code, status=error.status_code, detail=str(error.detail))
        shown.headers.update(error.headers or {})
        return shown
    return JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)
