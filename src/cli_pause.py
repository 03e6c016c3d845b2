"""``hasten pause`` and ``hasten resume``: hold a queue's jobs (``src/runner/pausing.py``). ``cli.py`` adds them to
the command."""

from __future__ import annotations

import typer
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

    async def act(client: JobClient) -> tuple[str, bool]:
        return client.queue_name, await pausing.pause(client.redis, client.queue_name)

    name, changed = cli_queue.run(act, queue)
    console.print(f"{'paused' if changed else 'already paused:'} {escape(name)}", soft_wrap=True)


@pause_app.command()
def resume(queue: str | None = _QUEUE) -> None:
    """Let the workers start a paused queue's jobs again (at once)."""

    async def act(client: JobClient) -> tuple[str, bool]:
        return client.queue_name, await pausing.resume(client.redis, client.queue_name)

    name, changed = cli_queue.run(act, queue)
    console.print(f"{'resumed' if changed else 'not paused:'} {escape(name)}", soft_wrap=True)
