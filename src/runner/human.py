"""How times read for people, in the command line and the dashboard alike."""

from __future__ import annotations


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
