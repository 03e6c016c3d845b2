"""``hasten``: run the worker, the embedded Redis, or the whole local stack (``hasten run``, behind ``make run``),
see and steer queues (``cli_queue.py``: status, inspect, enqueue, abort, purge, jobs list), look after the
dead-letter queue and the cron entries, and show a workflow's graph (``cli_workflow.py``).

Every listing has ``--json`` for scripts; tables never cut job ids or entry names. Errors of ours (Redis not
reachable, a bad setting, a bad cron entry) are one line and exit code 1.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from src import cli_cluster, cli_dlq, cli_limits, cli_outbox, cli_pause, cli_queue, cli_workflow
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
            verdict, said = cli_queue.run(lambda client: rc.check_registry(client.redis, client.queue_name, host))
        except JobsError as e:
            verdict, said = rc.Verdict.DOWN, f"not reachable: {e}"
    typer.echo(said)
    if live:  # a Redis blip makes a worker not ready, never unhealthy: its container is not restarted for it
        raise typer.Exit(int(verdict is rc.Verdict.DOWN))
    raise typer.Exit(int(verdict))


app.add_typer(cli_dlq.dlq_app, name="dlq")
app.registered_commands += cli_queue.queue_app.registered_commands
app.registered_commands += cli_pause.pause_app.registered_commands
app.registered_commands += cli_workflow.workflow_app.registered_commands
app.add_typer(cli_queue.jobs_app, name="jobs")

app.add_typer(cli_dlq.cron_app, name="cron")
app.add_typer(cli_outbox.outbox_app, name="outbox")
app.add_typer(cli_limits.limits_app, name="limits")
app.add_typer(cli_cluster.cluster_app, name="cluster")


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
