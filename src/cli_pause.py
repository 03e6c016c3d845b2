"""``hasten pause`` and ``hasten resume``: hold a queue's jobs (``src/runner/pausing.py``). ``cli.py`` adds them to
the command."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import typer
from redis.asyncio import Redis
from rich.console import Console
from rich.markup import escape

from src import cli_queue
from src.runner import pausing
from src.runner.client import JobClient

console = Console(stderr=True)

pause_app = typer.Typer()

_QUEUE = typer.Argument(None, help="The queue (default: JOBS_QUEUE_NAME).")


@pause_app.command()
def pause(queue: str | None = _QUEUE) -> None:
    """Start no job of a queue until it is resumed (every worker, restarts included); running jobs finish."""
    _switch(queue, pausing.pause, "paused", "already paused:")


@pause_app.command()
def resume(queue: str | None = _QUEUE) -> None:
    """Let the workers start a paused queue's jobs again (at once)."""
    _switch(queue, pausing.resume, "resumed", "not paused:")


def _switch(queue: str | None, act: Callable[[Redis, str], Awaitable[bool]], done: str, unchanged: str) -> None:
    async def on(client: JobClient) -> tuple[str, bool]:
        return client.queue_name, await act(client.redis, client.queue_name)

    name, changed = cli_queue.run(on, queue)
    console.print(f"{done if changed else unchanged} {escape(name)}", soft_wrap=True)
