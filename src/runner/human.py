"""How times read for people, in the command line and the dashboard alike."""

from __future__ import annotations

from datetime import UTC, datetime


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


def moment_ms(text: str) -> int:
    """A moment people type, as epoch milliseconds: digits are milliseconds already, anything else an ISO 8601 time
    (``2026-12-01T10:00``; UTC when it names no zone). ValueError, saying both forms, for anything else."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"takes an ISO time (2026-12-01T10:00) or epoch milliseconds, not {text!r}") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)
