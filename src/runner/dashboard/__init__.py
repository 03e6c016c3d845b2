"""The dashboard: queues, jobs, dead letters, cron entries and workers in a browser, and the JSON API behind it.

Mount it into an application (``app.mount("/jobs", dashboard(settings))``) or run it alone (``hasten web``).
Server-rendered pages (Jinja2, autoescaped) with one small script of our own, served from the package: no CDN,
no build step, works offline. Only ``__all__`` is stable.
"""

from __future__ import annotations

from .app import dashboard
from .options import DashboardOptions, NoCredentials

__all__ = ["DashboardOptions", "NoCredentials", "dashboard"]
