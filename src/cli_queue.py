"""``hasten`` commands that see and steer a queue: ``status``, ``inspect``, ``enqueue``, ``abort``, ``purge`` and
``jobs list``. Reads take ``--json``; bulk operations stream a page at a time with a progress bar.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from src import cli_output
from src.runner import constants as k
from src.runner import human, json_rows
from src.runner.client import JobClient
from src.runner.durations import FunctionDurations, durations
from src.runner.errors import JobsError
from src.runner.job import JobSpec
from src.runner.limits import LimitRow, limit_rows
from src.runner.queue_admin import JOB_STATES, JobPage, JobState, find_jobs, list_jobs, purge_queue
from src.runner.queue_stats import QueueStats, queue_stats
from src.runner.worker_registry import WorkerRecord, queue_names

T = TypeVar("T")

console = Console(stderr=True)
_JSON = typer.Option(False, "--json", help="Print JSON instead of a table, for scripts.")
_QUEUE = typer.Option(None, "--queue", "-q", help="The queue (default: JOBS_QUEUE_NAME).")


class UsageError(JobsError):
    """Bad input on the command line: one line, exit code 1."""


#: the top-level commands this module adds to ``hasten`` (``cli.py`` merges them in), and ``hasten jobs``
queue_app = typer.Typer()
jobs_app = typer.Typer(help="Jobs waiting or running in a queue.", no_args_is_help=True)
_QUEUES = typer.Option(
    [], "--queue", "-q", help="Queues to show (default: every queue with workers, and JOBS_QUEUE_NAME)."
)


def run(action: Callable[[JobClient], Awaitable[T]], queue: str | None = None) -> T:
    """Run ``action`` with a client of the configured Redis, on ``queue`` (default: the configured queue)."""
    from src.settings import get_settings

    async def on_queue() -> T:
        client = await get_settings().open_client()
        try:
            if queue is None or queue == client.queue_name:
                return await action(client)
            other = JobClient(client.redis, client.codec, queue_name=queue, max_payload_bytes=client.max_payload_bytes)
            return await action(other)
        finally:
            await client.close()

    return asyncio.run(on_queue())


@queue_app.command()
def status(
    queue: list[str] = _QUEUES,
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh in place until Ctrl-C."),
    interval_s: float = typer.Option(1.0, "--interval", min=0.2, help="Seconds between refreshes with --watch."),
    as_json: bool = _JSON,
) -> None:
    """Queues (queued, running, deferred, retrying, dead, oldest due job, rates) and the workers alive."""

    async def read(client: JobClient) -> _StatusRead:
        names = queue or sorted({client.queue_name, *await queue_names(client.redis)})
        return (
            [await queue_stats(client.redis, name) for name in names],
            {name: await durations(client.redis, name) for name in names},
            {name: await limit_rows(client.redis, name) for name in names},
        )

    if as_json:
        all_stats, timings, limits = run(read)
        cli_output.print_json(
            [
                {
                    **json_rows.stats_row(s, timings.get(s.queue)),
                    "limits": [json_rows.limit_row(s.queue, row) for row in limits.get(s.queue, [])],
                }
                for s in all_stats
            ]
        )
        return
    if not watch:
        Console(soft_wrap=False).print(_status_view(*run(read)))
        return

    async def refresh(client: JobClient) -> None:
        with Live(_status_view(*await read(client)), console=Console(), auto_refresh=False) as live:
            while True:
                await asyncio.sleep(interval_s)
                live.update(_status_view(*await read(client)), refresh=True)

    try:
        run(refresh)
    except KeyboardInterrupt:
        pass


@queue_app.command()
def inspect(job_id: str, queue: str | None = _QUEUE, as_json: bool = _JSON) -> None:
    """Everything known about one job, with the worker holding it and its lease."""

    record = run(lambda client: json_rows.job_record(client, job_id), queue)
    if record["status"] == "not_found" and record["function"] is None:
        console.print(f"[red]error:[/] no job {escape(job_id)} in queue {escape(record['queue'])}", soft_wrap=True)
        raise typer.Exit(1)
    if as_json:
        cli_output.print_json(record)
        return
    Console().print_json(data=record)


@queue_app.command()
def enqueue(
    name: str = typer.Argument(..., help="A registered job's name (see the error for the list)."),
    kwargs: str = typer.Option("{}", "--kwargs", help="Arguments by name, as a JSON object."),
    defer_by_s: float | None = typer.Option(
        None, "--defer-by", min=0, help="Run no sooner than this many seconds from now."
    ),
    job_id: str | None = typer.Option(
        None, "--job-id", help="Your own id (a job with this id already queued is not enqueued twice)."
    ),
    priority: int | None = typer.Option(
        None,
        "--priority",
        min=0,
        max=k.PRIORITY_MAX,
        help="A head start of this many minutes over priority-0 jobs (default: the job's own); not with --defer-by.",
    ),
    queue: str | None = _QUEUE,
) -> None:
    """Enqueue a registered job, its arguments validated as the client validates them."""
    spec = _registered(name)
    try:
        arguments = json.loads(kwargs)
    except json.JSONDecodeError as e:
        raise UsageError(f"--kwargs is not JSON: {e}") from None
    if not isinstance(arguments, dict):
        raise UsageError("--kwargs must be a JSON object of arguments by name")
    options: dict[str, Any] = {"job_id": job_id, "defer_by": defer_by_s, "priority": priority}
    spec = spec.options(**{key: value for key, value in options.items() if value is not None})
    if defer_by_s and spec.enqueue_options.priority:
        raise UsageError(f"--defer-by: {name} has priority {spec.enqueue_options.priority}, a head start for a job "
                         "due now; add --priority 0 to defer it")  # fmt: skip

    async def send(client: JobClient) -> str:
        handle = await client.enqueue(spec, **arguments)
        return handle.job_id

    sent = run(send, queue)
    sys.stdout.write(sent + "\n")
    console.print(f"enqueued {escape(name)} as {escape(sent)}", soft_wrap=True)


@queue_app.command()
def abort(
    job_id: str,
    wait_s: float = typer.Option(5.0, "--wait", min=0, help="Seconds to wait for a running job to stop."),
    queue: str | None = _QUEUE,
) -> None:
    """Abort a job: a queued one at once, a running one is cancelled by its worker."""
    if not run(lambda client: client.abort(job_id, timeout_s=wait_s), queue):
        console.print(
            f"[red]error:[/] job {escape(job_id)} was not aborted "
            f"(not queued or running, or it did not stop within {wait_s:g} s)",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    console.print(f"aborted {escape(job_id)}", soft_wrap=True)


@queue_app.command()
def purge(
    queue: str = typer.Argument(..., help="The queue to empty."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete every waiting job of a queue (queued, deferred, retrying); running jobs finish."""
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"not purging queue {queue!r} without confirmation: add --yes")
        typer.confirm(f"Delete every waiting job of queue {queue!r} for good?", abort=True, err=True)

    async def empty(client: JobClient) -> int:
        total = int(await client.redis.zcard(queue))
        with _progress() as bar:
            task = bar.add_task(f"purging {queue}", total=total)
            return await purge_queue(client.redis, queue, lambda examined, _: bar.update(task, completed=examined))

    console.print(f"purged {run(empty)} job(s) from {escape(queue)}", soft_wrap=True)


@jobs_app.command("list")
def jobs_list(
    queue: str | None = _QUEUE,
    state: str | None = typer.Option(None, "--status", help=f"One of: {', '.join(JOB_STATES)}."),
    function: str | None = typer.Option(None, "--function", help="Only jobs of this function."),
    due_from: str | None = typer.Option(None, "--from", help="Due at or after: ISO time (UTC unless it says) or ms."),
    due_to: str | None = typer.Option(None, "--to", help="Due at or before: ISO time (UTC unless it says) or ms."),
    prefix: str | None = typer.Option(None, "--prefix", help="Only job ids that start with this."),
    cursor: str | None = typer.Option(None, "--cursor", help="Continue where a page ended (it prints the cursor)."),
    offset: int = typer.Option(0, min=0, help="Skip this many matches (walks them: slow on large queues)."),
    limit: int = typer.Option(50, min=1, max=1000),
    as_json: bool = _JSON,
) -> None:
    """Jobs in a queue by due time, a page at a time; the next page's cursor is printed on stderr."""
    if state is not None and state not in JOB_STATES:
        raise UsageError(f"--status must be one of {', '.join(JOB_STATES)}, not {state!r}")
    if offset and cursor:
        raise UsageError("use either --offset or --cursor, not both")
    wanted: JobState | None = state  # narrowed by the check above
    low, high = _moment_ms(due_from, "--from"), _moment_ms(due_to, "--to")
    filters: dict[str, Any] = {
        "state": wanted, "function": function, "due_from_ms": low, "due_to_ms": high, "id_prefix": prefix
    }  # fmt: skip
    page = run(lambda client: _page(client, offset, cursor, limit, filters), queue)
    rows = [json_rows.queued_job_row(row) for row in page.jobs]
    if page.cursor is not None:
        console.print(f"scanned {page.scanned:,} rows, {len(rows)} shown; next page: --cursor {escape(page.cursor)}",
                      soft_wrap=True, highlight=False)  # fmt: skip
    if as_json:
        cli_output.print_json(rows)
        return
    if not rows:
        console.print("no jobs" if not offset else f"no jobs past {offset}")
        return
    shown = f"jobs {offset + 1}-{offset + len(rows)}" if offset else f"{len(rows)} job(s)"
    table = cli_output.table(f"{shown} (times in UTC)")
    cli_output.add_columns(table, ("job id", "function"), [r["job_id"] for r in rows], [r["function"] for r in rows])
    for column in ("status", "tries", "due"):  # the enqueue time is in --json: 80 columns keep the rest whole
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(
            escape(r["job_id"]), escape(r["function"]), r["state"], str(r["tries"]), _time(r["due_ms"]),
        )  # fmt: skip
    Console(soft_wrap=False).print(table)


async def _page(client: JobClient, offset: int, cursor: str | None, limit: int, filters: dict[str, Any]) -> JobPage:
    if offset:
        rows = await list_jobs(client.redis, client.codec.loads, client.queue_name, offset=offset, limit=limit,
                               **filters)  # fmt: skip
        return JobPage(rows, None, 0)
    try:
        return await find_jobs(client.redis, client.codec.loads, client.queue_name, cursor=cursor, limit=limit,
                               **filters)  # fmt: skip
    except ValueError as e:  # a cursor that is not one
        raise UsageError(f"--cursor: {e}") from None


def _moment_ms(value: str | None, option: str) -> int | None:
    """``--from``/``--to``: epoch milliseconds, or an ISO 8601 time (UTC when it names no zone)."""
    if value is None:
        return None
    try:
        return human.moment_ms(value)
    except ValueError as e:
        raise UsageError(f"{option} {e}") from None


def _registered(name: str) -> JobSpec[Any, Any]:
    from src.settings import WorkerSettings

    specs = {spec.name: spec for spec in WorkerSettings.functions if isinstance(spec, JobSpec)}
    if name not in specs:
        raise UsageError(f"no job named {name!r}; registered: {', '.join(sorted(specs)) or 'none'}")
    return specs[name]


def _time(ms: int | None) -> str:
    return cli_output.utc(None if ms is None else datetime.fromtimestamp(ms / 1000, UTC))


async def with_progress(description: str, act: Callable[[Callable[[int, int, int], None]], Awaitable[T]]) -> T:
    """Run a bulk operation that reports ``(examined, acted, total)`` after each page, with a progress bar."""
    with _progress() as bar:
        task = bar.add_task(description, total=None)
        return await act(lambda examined, _acted, total: bar.update(task, completed=examined, total=total))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
        transient=False,
    )  # fmt: skip


#: what ``hasten status`` reads: each queue's counts, its try durations per function, its limits
_StatusRead = tuple[list[QueueStats], dict[str, dict[str, FunctionDurations]], dict[str, list[LimitRow]]]


def _status_view(
    all_stats: list[QueueStats],
    timings: dict[str, dict[str, FunctionDurations]] | None = None,
    limits: dict[str, list[LimitRow]] | None = None,
) -> Group:
    queues = cli_output.table("queues (rates over the last 5 minutes)")
    cli_output.add_columns(queues, ("queue",), [s.queue for s in all_stats])
    # jobs held by a limit get a column only when there are some: an 80-column terminal keeps the others whole
    held = any(s.held for s in all_stats)
    columns = ("queued", "running", "deferred", "retrying", *(("held",) if held else ()), "dead", "oldest due")
    for column in (*columns, "done/s", "failed"):
        queues.add_column(column, justify="right")
    for s in all_stats:
        approx = "~" if s.estimated else ""
        rate = s.failure_rate()
        name = escape(s.queue) + (" [bold yellow](paused)[/]" if s.paused_since_ms is not None else "")
        queues.add_row(
            name, str(s.queued), str(s.running), f"{approx}{s.deferred}", f"{approx}{s.retrying}",
            *((str(s.held),) if held else ()), str(s.dead),
            "-" if s.oldest_due_age_s is None else cli_output.duration(s.oldest_due_age_s),
            _rate(s.throughput_per_s()), "-" if rate is None else f"{rate:.1%}",
        )  # fmt: skip
    from src.cli_limits import limits_view

    limited = [limits_view(queue, rows) for queue, rows in (limits or {}).items() if rows]
    return Group(
        queues, *limited, _durations_view(timings or {}), _workers_view([w for s in all_stats for w in s.workers])
    )


def _workers_view(workers: list[WorkerRecord]) -> Table:
    """Workers alive; the queue and version columns only when they differ between workers (an 80-column
    terminal keeps the rest whole)."""
    described: list[tuple[str, Callable[[WorkerRecord], str]]] = [("queue", _queue), ("version", _version)]
    varying = [(name, get) for name, get in described if len({get(w) for w in workers}) > 1]
    shared = ", ".join(f"{name} {get(workers[0])}" for name, get in described if workers and (name, get) not in varying)
    table = cli_output.table(f"{len(workers)} worker(s) alive" + (f" ({escape(shared)})" if shared else ""))
    cli_output.add_columns(table, ("worker", "host"), [w.worker_id for w in workers], [w.host for w in workers])
    columns = ["pid", *(name for name, _ in varying), "load", "lag", "up", "seen"]
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for w in workers:
        table.add_row(
            w.worker_id, escape(w.host), str(w.pid), *(escape(get(w)) for _, get in varying),
            f"{w.running}/{w.concurrency}", cli_output.duration(w.loop_lag_s), cli_output.duration(w.uptime_s),
            f"{cli_output.duration(json_rows.age_s(w.heartbeat_ms))} ago",
        )  # fmt: skip
    return table


def _rate(per_s: float) -> str:
    """``0``, ``0.003``, ``0.25``, ``42``, ``1234``: two significant digits below 100."""
    return "0" if per_s == 0 else f"{per_s:.2g}" if per_s < 100 else f"{per_s:.0f}"


def _queue(worker: WorkerRecord) -> str:
    return worker.queue


def _version(worker: WorkerRecord) -> str:
    return worker.version


def _durations_view(timings: dict[str, dict[str, FunctionDurations]]) -> Table:
    rows = [(queue, function, d) for queue, by_function in timings.items() for function, d in by_function.items()]
    table = cli_output.table("try durations per function, last hour" if rows else "no tries in the last hour")
    cli_output.add_columns(table, ("queue", "function"), [r[0] for r in rows], [r[1] for r in rows])
    for column in ("tries", "p50", "p95"):
        table.add_column(column, justify="right")
    for queue, function, d in rows:
        table.add_row(escape(queue), escape(function), str(d.tries), _seconds(d.p50_s), _seconds(d.p95_s))
    return table


def _seconds(value_s: float) -> str:
    """A duration read from log-scale buckets (±9 %): three significant digits in a unit that fits."""
    if value_s < 1e-3:
        return f"{value_s * 1e6:.3g}µs"
    if value_s < 1:
        return f"{value_s * 1e3:.3g}ms"
    return f"{value_s:.3g}s" if value_s < 60 else cli_output.duration(value_s)
