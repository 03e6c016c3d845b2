"""``hasten cluster move``: move a queue's slot to another master of a Redis Cluster while its workers run
(``src/runner/slot_move.py``). ``cli.py`` adds it to the command."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from src import cli_queue
from src.runner import slot_move
from src.runner.client import JobClient
from src.runner.cluster_pool import is_cluster_client

console = Console(stderr=True)

cluster_app = typer.Typer(help="A Redis Cluster's queues (JOBS_REDIS_CLUSTER=true).", no_args_is_help=True)


@cluster_app.command()
def move(
    queue: str = typer.Argument(..., help="The queue to move (its name carries a hash tag: {orders})."),
    to: str = typer.Option(..., "--to", metavar="HOST:PORT", help="The master to move it to, as the cluster names it."),
    wait_s: float = typer.Option(
        300.0, "--wait", min=0, metavar="SECONDS", help="How long to wait for the queue's running jobs to finish."
    ),
) -> None:
    """Move a queue's slot to another master: pause it, wait for its running jobs, move its keys, resume it.
    Producers keep enqueueing meanwhile; other queues are not touched."""

    async def on(client: JobClient) -> slot_move.MoveResult:
        if not is_cluster_client(client.redis):
            raise slot_move.SlotMoveError("not a Redis Cluster: set JOBS_REDIS_CLUSTER=true (and JOBS_REDIS_URL)")
        shown = -1

        def waiting(running: int, left_s: float) -> None:
            nonlocal shown
            if running != shown:  # one line per change, not per poll
                console.print(f"waiting for {running} running job(s) of {escape(queue)} ({left_s:.0f}s left)")
                shown = running

        return await slot_move.move_queue(client.redis, queue, to, wait_s=wait_s, report=waiting)  # type: ignore[arg-type]

    result = cli_queue.run(on, queue)
    if result.keys_moved == 0 and result.source == result.target:
        console.print(f"{escape(queue)} is already on {result.target} (slot {result.slot})", soft_wrap=True)
        return
    after = "resumed" if result.resumed else "still paused (it was paused before the move)"
    console.print(
        f"moved {escape(queue)} (slot {result.slot}, {result.keys_moved} keys) from {result.source} to "
        f"{result.target}; queue {after}",
        soft_wrap=True,
    )
