"""``jobs``: run the worker, the embedded Redis, or the whole local stack (``jobs run``, behind ``make run``)."""

from __future__ import annotations

import asyncio
import logging.config
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table

from src.runner.client import JobClient
from src.runner.cron_state import cron_states, forget
from src.runner.dlq import DeadJob, DeadLetters
from src.runner.redis_server import RedisServer

T = TypeVar("T")

app = typer.Typer(help="An asyncio-native job runner on Redis.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("JOBS_STATE_DIR", ROOT / ".state"))
EMBEDDED_PORT = 6390


@app.command()
def worker(burst: bool = typer.Option(False, help="Exit once the queue is empty.")) -> None:
    """Run one worker process (the same worker as `arq src.settings.WorkerSettings`)."""
    from arq.logs import default_log_config

    from src.runner.launch import create_worker
    from src.settings import WorkerSettings

    logging.config.dictConfig(default_log_config(verbose=WorkerSettings.log_level == "DEBUG"))
    create_worker(WorkerSettings, burst=burst).run()


@app.command()
def redis(port: int = typer.Option(EMBEDDED_PORT, help="Loopback port.")) -> None:
    """Run the embedded Redis (deploy/redis.conf, AOF on, data under .state/redis) in the foreground."""
    server = _embedded_redis(port).start()
    console.print(f"redis at [bold]{server.url}[/] (data in {server.data_dir}); Ctrl-C stops it")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.stop()


@app.command()
def run(redis_port: int = typer.Option(EMBEDDED_PORT, help="Port of the embedded Redis.")) -> None:
    """Local stack: Redis (embedded unless JOBS_REDIS_URL is set), a worker, and the example API."""
    from src.settings import get_settings

    server: RedisServer | None = None
    env = dict(os.environ)
    if not env.get("JOBS_REDIS_URL"):
        server = _embedded_redis(redis_port).start()
        env["JOBS_REDIS_URL"] = server.url
        console.print(f"embedded redis  [bold]{server.url}[/]  (data in {server.data_dir})")
    else:
        console.print("redis           from JOBS_REDIS_URL")
    settings = get_settings()
    api = f"http://{settings.api_host}:{settings.api_port}"
    # Children get a session of their own, so Ctrl-C reaches only this process, which then sends each child
    # one SIGTERM: a worker that got the terminal's SIGINT too would take the SIGTERM as a second signal
    # and skip its grace period. Hang-up and SIGTERM stop everything the same way.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    children = [
        subprocess.Popen([sys.executable, "-m", "src.cli", "worker"], env=env, cwd=ROOT, start_new_session=True),
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host", settings.api_host,
             "--port", str(settings.api_port), "--log-level", "warning"],
            env=env, cwd=ROOT, start_new_session=True,
        ),
    ]  # fmt: skip
    console.print(f"worker          pid {children[0].pid}")
    console.print(f"example API     [bold]{api}[/]  (docs: {api}/docs; try: curl -X POST {api}/demo)")
    console.print("Ctrl-C stops everything")
    try:
        _wait_any(children)
    except KeyboardInterrupt:
        pass
    finally:
        stop_processes(children)
        if server is not None:
            server.stop()
        console.print("stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


dlq_app = typer.Typer(help="The dead-letter queue: jobs that failed for good.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


def _with_client(action: Callable[[JobClient], Awaitable[T]]) -> T:
    """Run ``action`` with a client of the configured Redis and queue."""
    from src.settings import get_settings

    async def run() -> T:
        client = await get_settings().open_client()
        try:
            return await action(client)
        finally:
            await client.close()

    return asyncio.run(run())


def _with_dlq(action: Callable[[DeadLetters], Awaitable[T]]) -> T:
    """Run ``action`` against the configured queue's dead-letter queue."""
    return _with_client(lambda client: action(DeadLetters(client.redis, client.queue_name)))


@dlq_app.command("list")
def dlq_list(offset: int = 0, limit: int = typer.Option(20, min=1, max=500)) -> None:
    """Dead jobs, newest first."""

    async def fetch(dlq: DeadLetters) -> tuple[int, list[DeadJob]]:
        return await dlq.count(), await dlq.page(offset, limit)

    total, dead = _with_dlq(fetch)
    table = Table(title=f"dead jobs {offset + 1}-{offset + len(dead)} of {total}")
    for column in ("job id", "function", "reason", "tries", "failed at (UTC)", "error"):
        table.add_column(column)
    for d in dead:
        failed_at = _utc(datetime.fromtimestamp(d.failed_at_ms / 1000, UTC))
        error = f"{d.error_type}: {d.error_message}"
        table.add_row(d.job_id, d.function, d.reason, str(d.tries), failed_at, error[:80])
    Console().print(table)


@dlq_app.command("show")
def dlq_show(job_id: str) -> None:
    """Everything recorded about one dead job."""
    dead = _with_dlq(lambda dlq: dlq.get(job_id))
    if dead is None:
        console.print(f"[red]no dead job {job_id}[/]")
        raise typer.Exit(1)
    Console().print_json(data={key: value for key, value in asdict(dead).items() if key != "traceback"})
    Console().print(dead.traceback or "(no traceback)")


@dlq_app.command("requeue")
def dlq_requeue(
    job_id: str | None = typer.Argument(None), all_: bool = typer.Option(False, "--all"), function: str | None = None
) -> None:
    """Put one dead job (or --all, optionally of one --function) back in the queue."""
    done = _one_or_all(job_id, all_, lambda dlq, i: dlq.requeue(i), lambda dlq: dlq.requeue_all(function))
    console.print(f"requeued {done} job(s)")


@dlq_app.command("purge")
def dlq_purge(
    job_id: str | None = typer.Argument(None), all_: bool = typer.Option(False, "--all"), function: str | None = None
) -> None:
    """Delete one dead job (or --all, optionally of one --function) for good."""
    done = _one_or_all(job_id, all_, lambda dlq, i: dlq.purge(i), lambda dlq: dlq.purge_all(function))
    console.print(f"purged {done} job(s)")


def _one_or_all(
    job_id: str | None,
    all_: bool,
    one: Callable[[DeadLetters, str], Awaitable[bool]],
    every: Callable[[DeadLetters], Awaitable[int]],
) -> int:
    """How many dead jobs ``one`` (for a job id) or ``every`` (for --all) acted on."""
    if job_id is not None:
        return 1 if _with_dlq(lambda dlq: one(dlq, job_id)) else 0
    if all_:
        return _with_dlq(every)
    raise typer.BadParameter("give a job id or --all")


cron_app = typer.Typer(help="The cron entries workers run, and their state.", invoke_without_command=True)
app.add_typer(cron_app, name="cron")


@cron_app.callback()
def cron_list(ctx: typer.Context) -> None:
    """Every cron entry workers have run: schedule, policies, last and next tick, how the last run went."""
    if ctx.invoked_subcommand is not None:
        return
    states = _with_client(lambda client: cron_states(client.redis))
    table = Table(title=f"{len(states)} cron entries (times in UTC)")
    for column in ("entry", "schedule", "job", "missed/overlap", "last tick", "next tick", "last run", "skipped"):
        table.add_column(column)
    now = datetime.now(UTC)
    for s in states:
        last_run = s.phase if s.phase in ("queued", "running", "never") else s.last_status or "?"
        if s.phase == "finished" and s.last_duration_ms is not None:
            last_run += f" in {s.last_duration_ms} ms"
        next_tick = _utc(s.next_tick)
        if s.next_tick is not None and now - s.next_tick > timedelta(seconds=60):
            next_tick += " [red](overdue: no worker runs it)[/]"
        skipped = f"{s.skipped_overlap} overlapping, {s.missed_not_run} missed"
        table.add_row(
            s.name, f"{s.schedule} ({s.tz})", s.job, f"{s.missed}/{s.overlap}", _utc(s.last_tick), next_tick,
            last_run, skipped,
        )  # fmt: skip
    Console().print(table)


@cron_app.command("forget")
def cron_forget(name: str) -> None:
    """Drop the state of an entry taken out of the table (a worker still running it registers it again)."""
    if not _with_client(lambda client: forget(client.redis, name)):
        console.print(f"[red]no cron entry {name}[/]")
        raise typer.Exit(1)
    console.print(f"forgot cron entry {name}")


def _utc(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _embedded_redis(port: int) -> RedisServer:
    return RedisServer(STATE_DIR / "redis", port=port, config_file=ROOT / "deploy" / "redis.conf")


def _wait_any(children: list[subprocess.Popen[bytes]]) -> None:
    """Return when a child exits by itself (and say so); Ctrl-C arrives as KeyboardInterrupt."""
    while True:
        for child in children:
            if child.poll() is not None:
                console.print(f"[red]process {child.args!r} exited with {child.returncode}[/]")
                return
        time.sleep(0.2)


def stop_processes(children: list[subprocess.Popen[bytes]], timeout_s: float = 15) -> None:
    """SIGTERM every child still running, wait up to ``timeout_s`` for each, then SIGKILL."""
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
    app()
