"""``hasten dlq …`` and ``hasten cron …``: the dead-letter queue (list, show, requeue, purge; bulk actions a page
at a time with a progress bar) and the cron entries' state. ``cli.py`` adds them to the command."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from src import cli_output, cli_queue
from src.runner import json_rows
from src.runner.client import JobClient
from src.runner.cron_state import cron_states, forget
from src.runner.dlq import DeadJob, DeadLetters

T = TypeVar("T")
console = Console(stderr=True)
_JSON_HELP = "Print JSON (one array) instead of a table, for scripts."


dlq_app = typer.Typer(help="The dead-letter queue: jobs that failed for good.", no_args_is_help=True)


def _with_client(action: Callable[[JobClient], Awaitable[T]]) -> T:
    """Run ``action`` with a client of the configured Redis and queue."""
    return cli_queue.run(action)


def _with_dlq(action: Callable[[DeadLetters], Awaitable[T]]) -> T:
    """Run ``action`` against the configured queue's dead-letter queue."""
    return _with_client(lambda client: action(DeadLetters(client.redis, client.queue_name)))


@dlq_app.command("list")
def dlq_list(
    offset: int = typer.Option(0, min=0),
    limit: int = typer.Option(20, min=1, max=500),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Dead jobs, newest first."""

    async def fetch(dlq: DeadLetters) -> tuple[int, list[DeadJob]]:
        return await dlq.count(), await dlq.page(offset, limit)

    total, dead = _with_dlq(fetch)
    if as_json:
        cli_output.print_json([json_rows.dead_row(d) for d in dead])
        return
    if not dead:
        console.print("no dead jobs" if total == 0 else f"no dead jobs past {offset} (there are {total})")
        return
    table = cli_output.table(f"dead jobs {offset + 1}-{offset + len(dead)} of {total} (times in UTC)")
    ids, functions = [d.job_id for d in dead], [d.function for d in dead]
    cli_output.add_columns(table, ("job id", "function", "tries", "failed at"), ids, functions)
    table.add_column("reason: error", overflow="fold", ratio=1)
    for d in dead:
        failed_at = cli_output.utc(datetime.fromtimestamp(d.failed_at_ms / 1000, UTC))
        why = f"{d.reason}: {d.error_type}: {d.error_message}"
        table.add_row(escape(d.job_id), escape(d.function), str(d.tries), failed_at, escape(why[:300]))
    Console(soft_wrap=False).print(table)


@dlq_app.command("show")
def dlq_show(job_id: str, as_json: bool = typer.Option(False, "--json", help="Print the record as JSON.")) -> None:
    """Everything recorded about one dead job."""
    dead = _with_dlq(lambda dlq: dlq.get(job_id))
    if dead is None:
        console.print(f"[red]no dead job {escape(job_id)}[/]")
        raise typer.Exit(1)
    # the original payload is what requeue sends again; it is not redacted (URL credentials), so it is not shown
    record = json_rows.dead_row(dead)
    if as_json:
        cli_output.print_json(record)
        return
    Console().print_json(data={key: value for key, value in record.items() if key != "traceback"})
    sys.stdout.write(dead.traceback or "(no traceback)\n")  # as Python wrote it: no wrapping inside its lines


_ALL = typer.Option(False, "--all", help="Every dead job (of --function, if given).")
_FUNCTION = typer.Option(None, help="With --all: only dead jobs of this function.")


@dlq_app.command("requeue")
def dlq_requeue(job_id: str | None = typer.Argument(None), all_: bool = _ALL, function: str | None = _FUNCTION) -> None:
    """Put one dead job (or --all, optionally of one --function) back in the queue."""
    done = _one_or_all(
        job_id,
        all_,
        function,
        lambda dlq, i: dlq.requeue(i),
        lambda dlq: cli_queue.with_progress("requeuing", lambda progress: dlq.requeue_all(function, progress)),
    )
    console.print(f"requeued {done} job(s)")


@dlq_app.command("purge")
def dlq_purge(
    job_id: str | None = typer.Argument(None),
    all_: bool = _ALL,
    function: str | None = _FUNCTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="With --all: do not ask for confirmation."),
) -> None:
    """Delete one dead job (or --all, optionally of one --function) for good."""
    if all_ and job_id is None and not yes:
        which = f"every dead job of {function}" if function else "every dead job"
        if not sys.stdin.isatty():
            console.print(f"[red]not purging {which} without confirmation:[/] add --yes")
            raise typer.Exit(1)
        typer.confirm(f"Purge {which} for good?", abort=True, err=True)
    done = _one_or_all(
        job_id,
        all_,
        function,
        lambda dlq, i: dlq.purge(i),
        lambda dlq: cli_queue.with_progress("purging", lambda progress: dlq.purge_all(function, progress)),
    )
    console.print(f"purged {done} job(s)")


def _one_or_all(
    job_id: str | None,
    all_: bool,
    function: str | None,
    one: Callable[[DeadLetters, str], Awaitable[bool]],
    every: Callable[[DeadLetters], Awaitable[int]],
) -> int:
    """How many dead jobs ``one`` (for a job id) or ``every`` (for --all) acted on; an unknown id exits 1."""
    if job_id is not None and all_:
        raise typer.BadParameter("give a job id or --all, not both")
    if function is not None and not all_:
        raise typer.BadParameter("--function goes with --all")
    if job_id is not None:
        if not _with_dlq(lambda dlq: one(dlq, job_id)):
            console.print(f"[red]no dead job {escape(job_id)}[/] (see `hasten dlq list`)")
            raise typer.Exit(1)
        return 1
    if all_:
        return _with_dlq(every)
    raise typer.BadParameter("give a job id or --all")


cron_app = typer.Typer(help="The cron entries workers run, and their state.", invoke_without_command=True)


@cron_app.callback()
def cron_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=_JSON_HELP)) -> None:
    """Every cron entry workers have run: schedule, policies, last and next tick, how the last run went."""
    if ctx.invoked_subcommand is not None:
        return
    states = _with_client(lambda client: cron_states(client.redis))
    if as_json:
        cli_output.print_json([json_rows.cron_row(s) for s in states])
        return
    if not states:
        console.print("no cron entries (a worker registers its table when it starts)")
        return
    table = cli_output.table(f"{len(states)} cron entries (times in UTC)")
    cli_output.add_columns(table, ("entry", "job"), [s.name for s in states], [s.job for s in states])
    for column in ("schedule", "last tick", "next tick", "last run", "policies, skipped"):
        table.add_column(column, overflow="fold")
    now = datetime.now(UTC)
    for s in states:
        last_run = s.phase if s.phase in ("queued", "running", "never") else s.last_status or "?"
        if s.phase == "finished" and s.last_duration_ms is not None:
            last_run += f" in {s.last_duration_ms} ms"
        next_tick = cli_output.utc(s.next_tick)
        if s.next_tick is not None and now - s.next_tick > timedelta(seconds=60):
            next_tick += " [red](overdue: no worker runs it)[/]"
        policies = f"missed={s.missed} overlap={s.overlap}; skipped {s.skipped_overlap} overlapping, "
        policies += f"{s.missed_not_run} missed"
        table.add_row(
            escape(s.name), escape(s.job), escape(f"{s.schedule} {s.tz}"), cli_output.utc(s.last_tick), next_tick,
            last_run, policies,
        )  # fmt: skip
    Console(soft_wrap=False).print(table)


@cron_app.command("forget")
def cron_forget(name: str) -> None:
    """Drop the state of an entry taken out of the table (a worker still running it registers it again)."""
    if not _with_client(lambda client: forget(client.redis, name)):
        console.print(f"[red]no cron entry {name}[/]")
        raise typer.Exit(1)
    console.print(f"forgot cron entry {name}")
