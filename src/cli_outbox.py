"""``hasten outbox relay``: move committed outbox rows to Redis in a process of its own (``src/runner/outbox.py``;
a worker with ``JOBS_OUTBOX_URL`` runs the same relay as a task)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util

import typer
from rich.console import Console

from src import cli_queue
from src.runner.client import JobClient

console = Console(stderr=True)

outbox_app = typer.Typer(help="The outbox: jobs written in database transactions.", no_args_is_help=True)

#: how often the relay says how far it got
_REPORT_EVERY_S = 10.0


@outbox_app.command("relay")
def relay(
    db: str = typer.Option(None, "--db", help="The database URL (default: JOBS_OUTBOX_URL)."),
    batch: int = typer.Option(500, min=1, max=10_000, help="Rows per transaction."),
) -> None:
    """Move committed outbox rows to Redis until stopped (Ctrl-C), with a line every 10 s saying how many."""
    from src.settings import get_settings

    configured = get_settings().outbox_url
    url = db or (configured.get_secret_value() if configured is not None else None)
    if not url:
        console.print("error: no database: pass --db or set JOBS_OUTBOX_URL")
        raise typer.Exit(2)
    if importlib.util.find_spec("sqlalchemy") is None:
        console.print("error: the outbox needs the outbox extra: pip install 'hasten[outbox]'")
        raise typer.Exit(2)

    async def run(client: JobClient) -> int:
        from src.runner.outbox import OutboxRelay

        outbox = OutboxRelay.for_url(url, client, batch=batch)
        task = asyncio.create_task(outbox.run())
        try:
            while not task.done():
                await asyncio.wait([task], timeout=_REPORT_EVERY_S)
                console.print(f"relayed {outbox.relayed:,} jobs")
            return outbox.relayed
        finally:
            task.cancel()
            # its transaction ends (and its connection goes back) before the engine is disposed: a connection left
            # checked out is never closed, and SQLite's driver thread then keeps the process from exiting
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await outbox.close()

    try:
        cli_queue.run(run)
    except KeyboardInterrupt:
        console.print("stopped")
