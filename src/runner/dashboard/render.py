"""Jinja2 (autoescaped: every value from Redis is text, never markup) and the filters the templates use."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from .. import human
from .options import DashboardOptions

HERE = Path(__file__).parent
#: what stands for a value there is none of (a duration, a time, a rate)
NONE = "\N{EN DASH}"
#: characters of a value (arguments, result, traceback) shown on a page; the rest is in the download
SHOWN_CHARS = 4000

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def duration(seconds: float | None) -> str:
    """``850ms``, ``42s``, ``7m05s``, ``3h12m``, ``2d04h`` (as the command line shows them); :data:`NONE` for none."""
    return NONE if seconds is None else human.duration(seconds)


def moment(value: datetime | int | float | str | None) -> str:
    """A time in UTC, ``2026-12-01 16:40:23``; epoch milliseconds or ISO 8601 accepted."""
    if value is None or value == "":
        return NONE
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return text
    elif isinstance(value, int | float):
        value = datetime.fromtimestamp(value / 1000, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def input_time(text: str) -> str:
    """A time filter as typed (ISO, any zone, or epoch ms) shown back as the tables show times: UTC, to the second."""
    try:
        ms = human.moment_ms(text.strip())
    except ValueError:
        return text
    return moment(ms)


def shown(value: Any) -> tuple[str, bool]:
    """A value as readable text (JSON, indented), cut at :data:`SHOWN_CHARS`; and whether it was cut."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=repr, ensure_ascii=False)
    return (text[:SHOWN_CHARS], True) if len(text) > SHOWN_CHARS else (text, False)


def thousands(value: int) -> str:
    """``1,200``: counts that reach the millions stay readable."""
    return f"{value:,}"


def percent(value: float | None) -> str:
    return NONE if value is None else f"{value:.1%}"


env.filters.update(duration=duration, moment=moment, percent=percent, input_time=input_time, thousands=thousands)
env.globals.update(shown=shown)


def prefix(request: Request) -> str:
    """Where the dashboard is mounted (``/jobs``), for links that work mounted or not."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    options: DashboardOptions = request.app.state.dashboard.options
    context.setdefault("nav", "")
    html = env.get_template(template).render(
        request=request, base=prefix(request), csrf=getattr(request.state, "csrf", ""), options=options,
        read_only=options.read_only, **context,
    )  # fmt: skip
    return HTMLResponse(html, status_code=status_code)


def fragment(template: str, **context: Any) -> str:
    return env.get_template(template).render(**context)
