"""FastAPI glue: a lifespan that opens and closes one :class:`JobClient`, and an injectable alias.

::

    app = FastAPI(lifespan=client_lifespan(get_settings().open_client))

    @app.post("/orders/{id}/paid")
    async def paid(id: int, jobs: Jobs) -> dict[str, str]:
        handle = await jobs.enqueue(deliver_webhook, Delivery(...))
        return {"job_id": handle.job_id}
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from .client import JobClient


def client_lifespan(
    open_client: Callable[[], Awaitable[JobClient]],
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI ``lifespan`` that keeps one client on ``app.state.jobs`` while the app runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = await open_client()
        app.state.jobs = client
        try:
            yield
        finally:
            await client.close()

    return lifespan


def get_job_client(request: Request) -> JobClient:
    client: JobClient = request.app.state.jobs
    return client


#: ``jobs: Jobs`` in a route signature injects the app's client
Jobs = Annotated[JobClient, Depends(get_job_client)]
