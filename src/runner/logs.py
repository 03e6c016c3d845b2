"""Logging set-up for the worker: the ``hasten`` loggers beside arq's own (which arq's CLI configures)."""

from __future__ import annotations

import logging
import logging.config
from typing import Any


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``dictConfig`` for the ``hasten`` loggers, in arq's format, leaving other loggers alone."""
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
        "loggers": {"hasten": {"handlers": ["hasten.standard"], "level": level, "propagate": False}},
    }


def setup(level: str = "INFO") -> None:
    """Configure the ``hasten`` loggers unless the application already did."""
    if not logging.getLogger("hasten").handlers:
        logging.config.dictConfig(log_config(level))
