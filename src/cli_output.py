"""What the ``hasten`` command prints: tables whose ids people can copy, and JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.table import Table


def utc(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """``850ms``, ``42s``, ``7m05s``, ``3h12m``, ``2d04h``: short, and exact enough to act on."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


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
