"""Logging set-up for the worker: the ``hasten`` loggers and arq's own, in one format.

arq's CLI configures its logger with a format of its own (``12:00:00: message``) before it builds the
worker; the worker's lines and arq's read as one log when both go through the same handler. In a worker process
whose root logger has no handler yet, the root logger gets it too, so what jobs and libraries log (at WARNING and
up, unless their loggers say otherwise) comes out in the same format, with the job it belongs to
(``log_format.py``).
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Sequence
from typing import Any


def log_config(
    level: str = "INFO", loggers: Sequence[str] = ("hasten", "arq"), log_format: str = "text", *, root: bool = False
) -> dict[str, Any]:
    """A ``dictConfig`` for the ``hasten`` and ``arq`` loggers (or ``loggers``), in one format (``text`` or
    ``json``), leaving other loggers alone; with ``root``, the root logger's handler too (its level unchanged)."""
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "hasten.standard": {
                "level": level,
                "class": "logging.StreamHandler",
                "formatter": "hasten.standard",
                "filters": ["hasten.job", "hasten.redact"],
            }
        },
        "filters": {
            # the job a line was logged in: id, function, try, queue (src/runner/current_job.py)
            "hasten.job": {"()": "src.runner.log_format.JobFields"},
            # URLs in messages lose their credentials and query values (src/runner/redact.py)
            "hasten.redact": {"()": "src.runner.redact.RedactingFilter"},
        },
        "formatters": {"hasten.standard": {"()": "src.runner.log_format.formatter", "log_format": log_format}},
        "loggers": {name: {"handlers": ["hasten.standard"], "level": level, "propagate": False} for name in loggers},
    }
    if root:
        config["root"] = {"handlers": ["hasten.standard"]}
    return config


def setup(level: str = "INFO", log_format: str = "text") -> None:
    """Configure the ``hasten`` and ``arq`` loggers unless the application already configured ``hasten`` (and the
    root logger's handler unless it has one). :class:`SettingsInvalid` if ``log_format`` cannot be used."""
    from .log_format import require

    require(log_format)  # before dictConfig, which would bury the reason in a chain of ValueErrors
    if not logging.getLogger("hasten").handlers:
        logging.config.dictConfig(log_config(level, log_format=log_format, root=not logging.getLogger().handlers))
