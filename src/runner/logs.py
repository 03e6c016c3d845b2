"""Logging set-up for the worker: the ``jobs`` loggers beside arq's own (which arq's CLI configures)."""

from __future__ import annotations

import logging
import logging.config
from typing import Any


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``dictConfig`` for the ``jobs`` loggers, in arq's format, leaving other loggers alone."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"jobs.standard": {"level": level, "class": "logging.StreamHandler", "formatter": "jobs.standard"}},
        "formatters": {"jobs.standard": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "loggers": {"jobs": {"handlers": ["jobs.standard"], "level": level, "propagate": False}},
    }


def setup(level: str = "INFO") -> None:
    """Configure the ``jobs`` loggers unless the application already did."""
    if not logging.getLogger("jobs").handlers:
        logging.config.dictConfig(log_config(level))
