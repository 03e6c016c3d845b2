"""Jobs and worker settings for the telemetry tests: a job that logs, one that fails once then succeeds, one that
fails for good. ``python -m arq tests.telemetry_jobs.TelemetrySettings`` runs them in a real worker process."""

from __future__ import annotations

import logging
import os

from src.runner import NO_RETRY, Backoff, JobContext, job, launch
from src.runner.redis_url import redis_settings

launch.install()  # what importing src.settings does: arq's command builds our worker

#: a job's own logger, as a user's job module would name it: not under ``hasten``
job_logger = logging.getLogger("tests.telemetry_jobs")


@job
async def chatty(ctx: JobContext, word: str) -> str:
    job_logger.warning("said %s", word)
    return word


@job
async def reports(ctx: JobContext) -> None:
    job_logger.error("something odd in %s", ctx.function)


@job
async def current_span(ctx: JobContext) -> dict[str, object]:
    """The span the job's own code runs in — the parent of any span it opens, the context its calls propagate
    (the tests have the otel extra)."""
    from opentelemetry import trace

    span = trace.get_current_span()
    span_context = span.get_span_context()
    return {"trace_id": f"{span_context.trace_id:032x}", "sampled": span_context.trace_flags.sampled,
            "recording": span.is_recording()}  # fmt: skip


@job(retry=Backoff(max_tries=3, base_s=0.01, max_s=0.02))
async def fails_once(ctx: JobContext) -> int:
    if ctx.job_try == 1:
        raise ConnectionError("first try fails")
    return ctx.job_try


@job(retry=NO_RETRY)
async def doomed(ctx: JobContext) -> None:
    raise ValueError("never works, see https://user:hunter2@example.com/x?token=abc")


class TelemetrySettings:
    functions = (chatty, reports, fails_once, doomed)
    redis_settings = redis_settings(os.environ.get("JOBS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    poll_delay = 0.05
    log_level = os.environ.get("JOBS_LOG_LEVEL", "INFO")
    log_format = os.environ.get("JOBS_LOG_FORMAT", "text")
