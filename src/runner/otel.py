"""The OpenTelemetry side of ``tracing.py``: PRODUCER spans at enqueue, CONSUMER spans around tries. Imported only
by :func:`tracing.instrument`, so a process that does not trace does not load opentelemetry."""

from __future__ import annotations

import re
import traceback
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from .redact import redact_text

if TYPE_CHECKING:
    from .finish import Outcome

T = TypeVar("T")

#: what ``messaging.system`` says: no registered value fits, the wire is arq's, the spans are ours
SYSTEM = "hasten"

#: a W3C ``traceparent`` of version 00: trace id, parent span id, flags
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_EMPTY = otel_context.Context()


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
        self._provider = tracer_provider
        self._drops_unsampled: bool | None = None  # decided once the provider is known
        self.link = link

    def _skips_unsampled(self) -> bool:
        """Whether a try whose parent was not sampled can go without a span. The SDK's parent-based sampler — its
        default, and what ``OTEL_TRACES_SAMPLER=parentbased_*`` configures — drops such a span, yet making the
        non-recording span it stands for costs ~10 µs per try (attributes checked, ids drawn); attaching the
        parent's context, which is all the job's own spans and outgoing calls need, costs ~1.5. Any other
        sampler decides every try itself."""
        if self._drops_unsampled is None:
            provider = self._provider or trace.get_tracer_provider()
            if isinstance(provider, trace.ProxyTracerProvider):
                return False  # the application has not set its provider yet: ask again next time
            sampler = getattr(provider, "sampler", None)
            self._drops_unsampled = (
                isinstance(sampler, ParentBased) and getattr(sampler, "_remote_parent_not_sampled", None) is ALWAYS_OFF
            )
        return self._drops_unsampled

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
        """Await ``run`` (one try) inside a CONSUMER span parented on (or linked to) ``carrier``'s context — or, when
        the enqueue's trace was not sampled, inside that context alone (:meth:`_skips_unsampled`)."""
        remote = _traceparent(carrier)
        parent = _extract(carrier) if remote is None else _context_of(remote)
        if remote is not None and not remote.trace_flags.sampled and not self.link and self._skips_unsampled():
            token = otel_context.attach(parent)
            try:
                return await run
            finally:
                otel_context.detach(token)
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
    remote = _traceparent(carrier)
    if remote is not None:
        return _context_of(remote)
    if not isinstance(carrier, dict):
        return otel_context.Context()
    clean = {key: value for key, value in carrier.items() if isinstance(key, str) and isinstance(value, str)}
    return propagate.extract(clean, context=otel_context.Context())


def _context_of(remote: SpanContext) -> otel_context.Context:
    return trace.set_span_in_context(NonRecordingSpan(remote), _EMPTY)


def _traceparent(carrier: Any) -> SpanContext | None:
    """The usual payload's trace context — a valid traceparent alone — read at a third of the propagators' cost;
    None for anything else (the propagators read it)."""
    if type(carrier) is not dict or len(carrier) != 1:
        return None
    header = carrier.get("traceparent")
    if type(header) is not str or (match := _TRACEPARENT.fullmatch(header)) is None:
        return None
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not (trace_id and span_id):
        return None
    return SpanContext(trace_id, span_id, True, TraceFlags(int(match[3], 16)), DEFAULT_TRACE_STATE)


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
