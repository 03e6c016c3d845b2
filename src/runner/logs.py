"""Logging set-up for the worker: the ``hasten`` loggers and arq's own, in one format.

arq's CLI configures its logger with a format of its own (``12:00:00: message``) before it builds the
worker; the worker's lines and arq's read as one log when both go through the same handler.
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Sequence
from typing import Any


def log_config(level: str = "INFO", loggers: Sequence[str] = ("hasten", "arq")) -> dict[str, Any]:
    """A ``dictConfig`` for the ``hasten`` and ``arq`` loggers (or ``loggers``), in one format, leaving other
    loggers alone."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "hasten.standard": {
                "level": level,
                "class": "logging.StreamHandler",
                "formatter": "hasten.standard",
                "filters": ["hasten.redact"],
            }
        },
        # URLs in messages lose their credentials and query values (src/runner/redact.py)
        "filters": {"hasten.redact": {"()": "src.runner.redact.RedactingFilter"}},
        "formatters": {"hasten.standard": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "loggers": {name: {"handlers": ["hasten.standard"], "level": level, "propagate": False} for name in loggers},
    }


def setup(level: str = "INFO") -> None:
    """Configure the ``hasten`` and ``arq`` loggers unless the application already configured ``hasten``."""
    if not logging.getLogger("hasten").handlers:
        logging.config.dictConfig(log_config(level))
