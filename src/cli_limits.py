"""``hasten limits``: the concurrency and rate limits of a queue's functions, with their running and held jobs, and
``hasten limits set|unset`` to change them at run time (``src/runner/limits.py``). ``cli.py`` adds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from src import cli_output, cli_queue
from src.runner import constants as k
from src.runner import json_rows
from src.runner.client import JobClient
from src.runner.limits import Limit, LimitRow, limit_rows, parse_rate, set_limit

console = Console(stderr=True)

limits_app = typer.Typer(
    help="Concurrency and rate limits per function: show them (with running and held jobs), change them at run time.",
    invoke_without_command=True,
)
_QUEUE = typer.Option(None, "--queue", "-q", help="The queue (default: JOBS_QUEUE_NAME).")
_JSON = typer.Option(False, "--json", help="Print JSON instead of a table, for scripts.")
_FUNCTION = typer.Argument(..., help="The job's function (its @job name).")


@limits_app.callback()
def show(ctx: typer.Context, queue: str | None = _QUEUE, as_json: bool = _JSON) -> None:
    """Each limited function: its limit, the jobs running and held; then each key of a per-key limit with jobs."""
    if ctx.invoked_subcommand is not None:
        if queue is not None or as_json:  # an option given here would not reach the subcommand
            sub = ctx.invoked_subcommand
            raise cli_queue.UsageError(f"put --queue after `limits {sub}` (--json is for the listing)")
        return

    async def read(client: JobClient) -> tuple[str, list[LimitRow]]:
        return client.queue_name, await limit_rows(client.redis, client.queue_name)

    name, rows = cli_queue.run(read, queue)
    if as_json:
        cli_output.print_json([json_rows.limit_row(name, row) for row in rows])
        return
    Console(soft_wrap=False).print(limits_view(name, rows))


@limits_app.command("set")
def set_(
    function: str = _FUNCTION,
    max_concurrency: int | None = typer.Option(None, "--max-concurrency", min=1, help="Runs at once, all workers."),
    rate: str | None = typer.Option(None, "--rate", help="Starts per period: '100/m', '20/s', '5/h'."),
    queue: str | None = _QUEUE,
) -> None:
    """Change a function's limit now (what is not given stays); held jobs the new limit lets run start at once."""
    if max_concurrency is None and rate is None:
        raise cli_queue.UsageError("give --max-concurrency and/or --rate (unset removes a limit)")
    try:
        parsed = None if rate is None else parse_rate(rate)
    except ValueError as e:
        raise cli_queue.UsageError(str(e)) from None

    def change(current: Limit) -> Limit:
        changed = current if max_concurrency is None else replace(current, max_concurrency=max_concurrency)
        return changed if parsed is None else replace(changed, rate=parsed)

    _change(function, queue, change)


@limits_app.command()
def unset(
    function: str = _FUNCTION,
    max_concurrency: bool = typer.Option(False, "--max-concurrency", help="Only the concurrency limit."),
    rate: bool = typer.Option(False, "--rate", help="Only the rate limit."),
    queue: str | None = _QUEUE,
) -> None:
    """Lift a function's limits (both unless one is named) until set again; workers restarting keep this."""
    both = not max_concurrency and not rate

    def change(current: Limit) -> Limit:
        return Limit(
            None if both or max_concurrency else current.max_concurrency, None if both or rate else current.rate
        )

    _change(function, queue, change)


def _change(function: str, queue: str | None, change: Callable[[Limit], Limit]) -> None:
    async def act(client: JobClient) -> tuple[str, Limit]:
        rows = {row.function: row for row in await limit_rows(client.redis, client.queue_name) if row.key is None}
        if function not in rows:
            known = ", ".join(rows) or "none"
            raise cli_queue.UsageError(
                f"function {function!r} has no limits in queue {client.queue_name!r} (limited functions: {known}); "
                "declare one in its @job (max_concurrency=…, rate_limit=…) and start a worker"
            )
        limit = change(rows[function].limit)
        try:
            await set_limit(client.redis, client.queue_name, function, limit, lease_ms=int(k.DEFAULT_LEASE_S * 1000))
        except ValueError as e:
            raise cli_queue.UsageError(str(e)) from None
        return client.queue_name, limit

    name, limit = cli_queue.run(act, queue)
    console.print(f"{escape(function)} in {escape(name)}: {limit.describe()}", soft_wrap=True)


def limits_view(queue: str, rows: list[LimitRow]) -> Table:
    """The limits table (``hasten limits``, and ``hasten status`` below its queues)."""
    table = cli_output.table(f"limits of {queue}" if rows else f"no limits in {queue}")
    names = [row.function if row.key is None else f"  key {row.key}" for row in rows]
    cli_output.add_columns(table, ("function",), [escape(n) for n in names])
    for column in ("limit", "running", "held"):
        table.add_column(column, justify="right")
    for name, row in zip(names, rows, strict=True):
        limit = row.limit.describe() + ("" if row.declared is None else f" (declared: {row.declared.describe()})")
        table.add_row(escape(name), "" if row.key is not None else escape(limit), str(row.running), str(row.held))
    return table
