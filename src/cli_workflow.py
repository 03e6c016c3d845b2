"""``hasten workflow <id>``: a workflow's graph as it stands — its status and error, and each step's function,
status, job id, inputs and result. ``cli.py`` adds it to the command."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from src import cli_output, cli_queue
from src.runner import json_rows

workflow_app = typer.Typer()

#: how much of a step's result a table shows (``--json`` has all of it)
_RESULT_CHARS = 80


@workflow_app.command()
def workflow(
    workflow_id: str = typer.Argument(..., help="The workflow's id (WorkflowHandle.workflow_id)."),
    as_json: bool = typer.Option(False, "--json", help="Print the graph as JSON (the dashboard API's shape)."),
) -> None:
    """A workflow's status and error, and each step: function, status, job id, inputs, result."""
    row = cli_queue.run(lambda client: json_rows.read_workflow_row(client, workflow_id))
    if as_json:
        cli_output.print_json(row)
        return
    title = (
        f"workflow {row['workflow_id']}: {row['status']} ({len(row['steps'])} steps, on failure: {row['on_failure']})"
    )
    table = cli_output.table(title)
    steps = row["steps"]
    cli_output.add_columns(
        table, ("step", "function", "status", "job id"), [str(s["index"]) for s in steps],
        [s["function"] for s in steps], [s["status"] for s in steps], [s["job_id"] for s in steps],
    )  # fmt: skip
    table.add_column("inputs", no_wrap=True)
    table.add_column("result", overflow="fold", ratio=1)
    for s in steps:
        inputs = _ranges(s["after"])
        table.add_row(
            str(s["index"]), escape(s["function"]), s["status"], escape(s["job_id"]), inputs, escape(_result(s))
        )
    out = Console(soft_wrap=False)
    out.print(table)
    if row["error"]:
        out.print(f"[red]error:[/] {escape(row['error'])}", soft_wrap=True)


def _ranges(steps: list[int]) -> str:
    """``0-149,151``: a fan-in's inputs in a few characters."""
    runs: list[list[int]] = []
    for i in steps:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}-{b}" if b - a > 1 else ",".join(map(str, range(a, b + 1))) for a, b in runs) or "-"


def _result(step: dict[str, Any]) -> str:
    if step["result_error"]:
        return f"(unreadable: {step['result_error']})"
    if step["status"] != "done":
        return ""
    text = json.dumps(step["result"], default=str)
    return text if len(text) <= _RESULT_CHARS else text[: _RESULT_CHARS - 1] + "…"
