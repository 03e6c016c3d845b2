"""What the ``hasten`` command prints: tables whose ids people can copy, and JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.table import Table

from src.runner.human import duration

__all__ = ["add_columns", "duration", "print_json", "table", "utc"]


def utc(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def table(title: str) -> Table:
    # no vertical rules: narrow terminals keep their columns for the text
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )


def add_columns(table: Table, names: Sequence[str], *values: Sequence[str]) -> None:
    """Columns of names people copy (ids, functions, entries; ``values`` gives each one's cells): they never
    wrap or shrink below their longest cell; the columns added after them wrap instead."""
    for i, name in enumerate(names):
        cells = values[i] if i < len(values) else []
        table.add_column(name, no_wrap=True, min_width=max([len(name), *map(len, cells)]))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
