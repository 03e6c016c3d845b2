"""Typed jobs using what the worker's ``on_startup`` created (a database pool, an API client …).

arq apps put such things in the ctx dict: ``ctx["db"] = await create_pool()``. A typed job receives a
:class:`JobContext`, not that dict: put one object holding them in ``ctx["state"]``, and the job gets it back,
typed, with ``ctx.state(AppState)``. In a unit test, give the same object to ``EagerClient(state=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from src.runner import JobContext, job


class Inventory:
    """Stands for a database pool: made once per worker process, shared by all its jobs."""

    def __init__(self) -> None:
        self.stock: dict[str, int] = {"apple": 3}
        self.closed = False

    async def take(self, item: str, count: int) -> int:
        self.stock[item] = self.stock.get(item, 0) - count
        return self.stock[item]

    async def close(self) -> None:
        self.closed = True


@dataclass
class AppState:
    """Everything the jobs share; one per worker process."""

    inventory: Inventory
    notes: list[str] = field(default_factory=list)


async def startup(ctx: dict[str, Any]) -> None:
    ctx["state"] = AppState(inventory=Inventory())


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["state"].inventory.close()


@job
async def reserve(ctx: JobContext, item: str, count: int) -> int:
    """Take ``count`` of ``item``; returns what is left."""
    state = ctx.state(AppState)  # typed: AppState
    left = await state.inventory.take(item, count)
    state.notes.append(f"{ctx.job_id}: {item} -{count}")
    return left


class WorkerSettings:
    """``arq examples.shared_state.WorkerSettings`` (with ``src.settings`` imported first, it runs our worker)."""

    functions = (reserve,)
    on_startup = startup
    on_shutdown = shutdown
