"""Traces, JSON logs and Sentry switched on as in production, with nothing sent anywhere: what they cost a drain.

Spans go through the SDK's batch processor to an exporter that drops them; Sentry gets a transport that drops
events (a no-op drain has no failures, so only its per-event set-up is measured, which is none); JSON lines at INFO
(per-job lines stay at DEBUG, so a drain writes none).
"""

from __future__ import annotations

import logging.config
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from sentry_sdk.transport import Transport

from src.runner import sentry, tracing
from src.runner.logs import log_config


class _DropSpans(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _DropEvents(Transport):
    def capture_envelope(self, envelope: Any) -> None:
        pass


def trace(sampled: float) -> None:
    """Trace enqueues and tries in this process, sampling the share ``sampled`` of new traces (what
    ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` configures: a try follows its enqueue's decision)."""
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(sampled)))
    provider.add_span_processor(BatchSpanProcessor(_DropSpans()))
    tracing.instrument(provider)


def worker(parts: str = "traces,logs,sentry") -> None:
    """What ``parts`` names switched on in a benchmark worker process (before it is built)."""
    if "traces" in parts:
        trace(float(os.environ.get("BENCH_TRACES_SAMPLED", "1")))
    if "logs" in parts:
        logging.config.dictConfig(log_config("INFO", log_format="json", root=True))
    if "sentry" in parts:
        sentry.init("https://key@sentry.invalid/1", transport=_DropEvents())
