"""Traces and error tracking switched on by settings (``JOBS_TRACING``, ``JOBS_SENTRY_DSN``): the worker calls
:func:`setup_worker` when it starts, ``Settings.open_client()`` :func:`setup_tracing`. Each imports its extra only
when switched on; a missing extra is one clear error naming it."""

from __future__ import annotations

import importlib.util
from typing import Any

from pydantic import SecretStr

from . import tracing
from .errors import SettingsInvalid


def _require(module: str, setting: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise SettingsInvalid(f"{setting} needs the {extra} extra: pip install 'hasten[{extra}]'")


def setup_tracing(mode: str) -> None:
    """``off``: nothing (tracing stays as it is: :func:`tracing.instrument` may have been called in code);
    ``parent`` or ``link``: :func:`tracing.instrument` with the global tracer provider."""
    if mode == "off":
        return
    if mode not in ("parent", "link"):
        raise SettingsInvalid(f"JOBS_TRACING: expected 'off', 'parent' or 'link', got {mode!r}")
    _require("opentelemetry.sdk", "JOBS_TRACING", "otel")
    tracing.instrument(link=mode == "link")


def setup_worker(settings: Any) -> None:
    """What a worker's settings (class or object) ask for: ``tracing`` and ``sentry_dsn``."""
    setup_tracing(getattr(settings, "tracing", "off"))
    dsn = getattr(settings, "sentry_dsn", None)
    if isinstance(dsn, SecretStr):
        dsn = dsn.get_secret_value()
    if dsn:
        _require("sentry_sdk", "JOBS_SENTRY_DSN", "sentry")
        from . import sentry

        sentry.init(dsn)
