"""How log lines look: readable text in development, one JSON object per line in production.

Both formats carry the job a line was logged in (:class:`JobFields`, from ``current_job.py``): ``job_id``,
``function``, ``job_try`` and ``queue``, whichever logger logged it — the job's own code, a library it calls, the
worker or arq. Text shows them after the message (``… [job=3f2a fn=send_email try=2 queue=arq:queue]``); JSON has
them as fields.

JSON comes from python-json-logger (the ``json-logs`` extra), on standard ``logging``: arq, libraries and jobs all
log through ``logging``, so a formatter on our one handler covers every line the process writes; a structured
logging library (structlog) would add a second pipeline to route arq's and the libraries' lines through, for the
same output. Its orjson variant is used because orjson is a dependency already.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Literal

from . import current_job
from .errors import SettingsInvalid
from .redact import redact_text

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: what the JSON lines are called beside the record's own extras (job fields, ``extra=``)
_JSON_NAMES = {"levelname": "level", "name": "logger"}


class JobFields(logging.Filter):
    """A handler filter: a record logged while a job's try runs gets ``job_id``, ``function``, ``job_try`` and
    ``queue``. Add it to your own handlers to have them there too (``logging.Handler.addFilter(JobFields())``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.current()
        # fields given with extra= (the worker's own lines about a job) are left as given
        if job is not None and not hasattr(record, "job_id"):
            record.job_id, record.function, record.job_try, record.queue = job
        return True


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, and the job after the message (before a traceback) when the line is a job's."""

    def __init__(self, fmt: str = TEXT_FORMAT, **kwargs: Any) -> None:
        super().__init__(fmt, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            return line
        return (
            f"{line} [job={job_id} fn={getattr(record, 'function', '?')} try={getattr(record, 'job_try', '?')} "
            f"queue={getattr(record, 'queue', '?')}]"
        )


def require(log_format: str) -> None:
    """:class:`SettingsInvalid` when ``log_format`` cannot be used in this environment (its extra is missing)."""
    if log_format == "json" and importlib.util.find_spec("pythonjsonlogger") is None:
        raise SettingsInvalid("JOBS_LOG_FORMAT=json needs python-json-logger: pip install 'hasten[json-logs]'")
    if log_format not in ("text", "json"):
        raise SettingsInvalid(f"JOBS_LOG_FORMAT: expected 'text' or 'json', got {log_format!r}")


def json_formatter() -> logging.Formatter:
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the record's extras
    (the job's fields among them) and ``exc_info`` — its URLs redacted like the message's."""
    require("json")
    from pythonjsonlogger.orjson import OrjsonFormatter

    class JsonFormatter(OrjsonFormatter):
        def formatException(self, ei: Any) -> str:
            # python-json-logger formats the exception afresh, past the redacted exc_text RedactingFilter left
            # (a str: exc_info_as_array is off)
            return redact_text(str(super().formatException(ei)))

    return JsonFormatter("{levelname}{name}{message}", style="{", rename_fields=_JSON_NAMES, timestamp="time")


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``log_format`` (``text`` or ``json``)."""
    require(log_format)
    return json_formatter() if log_format == "json" else TextFormatter()
