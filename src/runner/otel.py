"""The OpenTelemetry side of ``tracing.py``: PRODUCER spans at enqueue, CONSUMER spans around tries. Imported only
by :func:`tracing.instrument`, so a process that does not trace does not load opentelemetry."""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from .redact import redact_text

if TYPE_CHECKING:
    from .finish import Outcome

T = TypeVar("T")

#: what ``messaging.system`` says: no registered value fits, the wire is arq's, the spans are ours
SYSTEM = "hasten"


class Send:
    """The producer span of an enqueue, and the trace context to put in the payload."""

    __slots__ = ("carrier", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.carrier: dict[str, str] = {}
        propagate.inject(self.carrier, context=trace.set_span_in_context(span))

    def message_id(self, job_id: str) -> None:
        self.span.set_attribute("messaging.message.id", job_id)


class JobTracer:
    def __init__(self, tracer_provider: trace.TracerProvider | None, *, link: bool) -> None:
        self._tracer = trace.get_tracer("hasten", tracer_provider=tracer_provider)
        self.link = link

    @contextmanager
    def sending(self, queue: str, function: str, count: int = 1) -> Iterator[Send]:
        """A PRODUCER span around writing ``count`` jobs (current while it lasts: the write's own spans nest)."""
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": queue,
            "messaging.operation.type": "send",
            "messaging.operation.name": "enqueue",
            "hasten.job.function": function,
        }
        if count != 1:
            attributes["messaging.batch.message_count"] = count
        with self._tracer.start_as_current_span(f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes) as span:
            yield Send(span)

    async def consume(
        self, run: Awaitable[tuple[Outcome, T]], job_id: str, function: str, job_try: int, queue: str, carrier: Any
    ) -> tuple[Outcome, T]:
        """Await ``run`` (one try) inside a CONSUMER span parented on (or linked to) ``carrier``'s context."""
        parent = _extract(carrier)
        links: list[Link] = []
        if self.link:
            producer = trace.get_current_span(parent).get_span_context()
            links = [Link(producer)] if producer.is_valid else []
            parent = otel_context.Context()  # a trace of its own
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": queue,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": job_id,
            "hasten.job.function": function,
            "hasten.job.try": job_try,
        }
        with self._tracer.start_as_current_span(
            f"process {queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
        ) as span:
            outcome, ctx = await run
            _record(span, outcome)
        return outcome, ctx


def _extract(carrier: Any) -> otel_context.Context:
    """The context a payload's trace context names; an empty one (a root span) for anything else: the worker does
    not trust what it reads from Redis."""
    if not isinstance(carrier, dict):
        return otel_context.Context()
    clean = {key: value for key, value in carrier.items() if isinstance(key, str) and isinstance(value, str)}
    return propagate.extract(clean, context=otel_context.Context())


def _record(span: Span, outcome: Outcome) -> None:
    span.set_attribute("hasten.job.outcome", outcome.kind)  # as the metrics' outcome label
    failure = outcome.failure
    if failure is None:
        return
    error = failure.error
    message = redact_text(str(error))
    span.record_exception(
        error,
        attributes={
            "exception.message": message,
            "exception.stacktrace": redact_text("".join(traceback.format_exception(error))),
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))
    if failure.dead:
        span.add_event("dead_letter", {"hasten.dead_letter.reason": failure.reason})
    elif failure.retry_in_s is not None:
        span.add_event("retry", {"hasten.retry.delay_s": failure.retry_in_s})
