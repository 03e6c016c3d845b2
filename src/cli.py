"""``hasten``: run the worker, the embedded Redis, or the whole local stack (``hasten run``, behind ``make run``),
see and steer queues (``cli_queue.py``: status, inspect, enqueue, abort, purge, jobs list), and look after the
dead-letter queue and the cron entries.

Every listing has ``--json`` for scripts; tables never cut job ids or entry names. Errors of ours (Redis not
reachable, a bad setting, a bad cron entry) are one line and exit code 1.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
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
from src.runner.errors import JobsError, RedisUnreachable

T = TypeVar("T")

app = typer.Typer(
    name="hasten", help="An asyncio-native job runner on Redis.", no_args_is_help=True, add_completion=False
)
console = Console(stderr=True)

_JSON_HELP = "Print JSON (one array) instead of a table, for scripts."


def main() -> None:
    """The ``hasten`` command (and ``python -m src.cli``)."""
    try:
        app()
    except JobsError as e:
        message = str(e)
        if isinstance(e, RedisUnreachable) and _uses_embedded_redis():
            message += " (the embedded Redis: start it with `make run` or `make redis`)"
        for line in message.splitlines():  # several bad settings: one line each
            console.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)
        sys.exit(1)


def _uses_embedded_redis() -> bool:
    from src.settings import get_settings

    return get_settings().redis_url is None


@app.command()
def worker(
    burst: bool = typer.Option(False, help="Exit once the queue is empty."),
    workers: str | None = typer.Option(
        None, metavar="N", help="Run N worker processes under one supervisor that restarts them (JOBS_WORKERS)."
    ),
    max_jobs_per_child: str | None = typer.Option(
        None,
        metavar="N",
        help="With --workers: a worker that started N jobs drains and is replaced (JOBS_MAX_JOBS_PER_CHILD).",
    ),
    max_memory_per_child: str | None = typer.Option(
        None,
        metavar="MIB",
        help="With --workers: a worker whose memory grew past MIB MiB drains and is replaced "
        "(JOBS_MAX_MEMORY_PER_CHILD_MIB).",
    ),
    settings: str = typer.Option("src.settings.WorkerSettings", help="The worker's settings class, as arq takes it."),
    fleet_child: bool = typer.Option(False, "--fleet-child", hidden=True),
) -> None:
    """Run one worker process (the same worker as `arq src.settings.WorkerSettings`), or a fleet of them."""
    from src.worker_command import run_worker

    code = run_worker(
        settings=settings, burst=burst, workers=workers, max_jobs_per_child=max_jobs_per_child,
        max_memory_per_child=max_memory_per_child, fleet_child=fleet_child,
    )  # fmt: skip
    if code:
        raise typer.Exit(code)


@app.command()
def redis() -> None:
    """Run the embedded Redis (deploy/redis.conf, AOF on, on a socket in the state dir) in the foreground."""
    from src import local_stack
    from src.settings import get_settings

    settings = get_settings()
    if settings.redis_url:  # an option we would not honour is refused, not ignored
        console.print("[red]error:[/] JOBS_REDIS_URL is set: unset it to run the embedded Redis", soft_wrap=True)
        raise typer.Exit(2)
    stack = local_stack.LocalStack(settings, console)
    with stack.signals_caught():
        try:
            url = stack.start_redis()
            console.print(f"redis at [bold]{url}[/]; Ctrl-C stops it", soft_wrap=True)
            while not stack.received:
                time.sleep(0.1)
        finally:
            stack.stop()


@app.command()
def run() -> None:
    """Local stack: Redis (embedded unless JOBS_REDIS_URL is set), a worker, the example API and the dashboard."""
    from src import local_stack
    from src.settings import get_settings

    raise typer.Exit(local_stack.run(get_settings(), console))


@app.command()
def web(
    host: str | None = typer.Option(None, help="Address to listen on [default: JOBS_DASHBOARD_HOST, 127.0.0.1]."),
    port: int | None = typer.Option(None, help="Port [default: JOBS_DASHBOARD_PORT, 8001]."),
) -> None:
    """Serve the dashboard. Beyond loopback it needs JOBS_DASHBOARD_TOKEN (or basic credentials)."""
    import uvicorn

    from src import jobs
    from src.runner.dashboard import DashboardOptions, dashboard
    from src.settings import get_settings

    settings = get_settings()
    host = host or settings.dashboard_host
    options = DashboardOptions.from_settings(settings, jobs=tuple(jobs.ALL))
    options.check_bind(host)  # no credentials beyond loopback: one line, exit code 1 (main)
    console.print(f"dashboard at http://{host}:{port or settings.dashboard_port}/", soft_wrap=True)
    uvicorn.run(dashboard(settings, options=options), host=host, port=port or settings.dashboard_port,
                log_level="warning")  # fmt: skip


@app.command()
def check(
    url: str | None = typer.Option(None, help="A worker's endpoint [default: http://127.0.0.1:JOBS_METRICS_PORT]."),
    via_redis: bool = typer.Option(False, "--via-redis", help="Ask the worker registry's heartbeats in Redis."),
    any_host: bool = typer.Option(False, "--any-host", help="With --via-redis: a worker on any host counts."),
    live: bool = typer.Option(
        False, "--live", help="Liveness only: exit 0 when alive (ready or not), 1 when not (container health checks)."
    ),
) -> None:
    """Exit 0 when a worker is ready, 1 when alive but not ready, 2 when not alive or not reachable."""
    from src.runner import readiness_check as rc
    from src.settings import get_settings

    port = get_settings().metrics_port
    if url is not None and via_redis:
        raise typer.BadParameter("give --url or --via-redis, not both")
    if not via_redis and (url is not None or port is not None):
        verdict, said = rc.check_endpoint(url or f"http://127.0.0.1:{port}")
    else:  # without an endpoint, the registry is what there is to ask
        host = None if any_host else rc.this_host()
        try:
            verdict, said = _with_client(lambda client: rc.check_registry(client.redis, client.queue_name, host))
        except JobsError as e:
            verdict, said = rc.Verdict.DOWN, f"not reachable: {e}"
    typer.echo(said)
    if live:  # a Redis blip makes a worker not ready, never unhealthy: its container is not restarted for it
        raise typer.Exit(int(verdict is rc.Verdict.DOWN))
    raise typer.Exit(int(verdict))


dlq_app = typer.Typer(help="The dead-letter queue: jobs that failed for good.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


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


app.registered_commands += cli_queue.queue_app.registered_commands
app.add_typer(cli_queue.jobs_app, name="jobs")

cron_app = typer.Typer(help="The cron entries workers run, and their state.", invoke_without_command=True)
app.add_typer(cron_app, name="cron")


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


def stop_processes(children: list[subprocess.Popen[bytes]], timeout_s: float = 15) -> None:
    """SIGTERM every child still running, wait up to ``timeout_s`` for each, then SIGKILL (used by bench/)."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
