"""OpenTelemetry traces of jobs (the ``otel`` extra): off until switched on, and then without a per-job import.

Switch on with :func:`instrument` (in the worker's ``on_startup`` or the settings module, and in the service that
enqueues), or with ``JOBS_TRACING=parent`` / ``link`` (``telemetry.py`` calls :func:`instrument` in the worker and
in ``Settings.open_client()``). Spans go to the tracer provider given, else to OpenTelemetry's global one — the one
the application (or ``opentelemetry-instrument``) configured with its exporter.

- Enqueue: a PRODUCER span ``send <queue>`` around the write (``enqueue_many``: one for the batch), whose W3C trace
  context (``traceparent``, ``tracestate``) travels in the job's payload: inside arq's job dict under
  :data:`TRACE_CONTEXT_KEY`, so it is covered by the payload's signature (a worker refuses a payload whose trace
  context was changed, like any other change) and stock arq workers, which read only their own keys, ignore it.
- Each try: a CONSUMER span ``process <queue>``, a child of the producer span — or, with ``link=True``, the root of
  a trace of its own with a link to it (long or fanned-out jobs that should not stretch the request's trace). Its
  attributes follow the messaging conventions (``messaging.system``, ``messaging.destination.name``,
  ``messaging.message.id``, ``messaging.operation.type`` …) plus ``hasten.job.function``, ``hasten.job.try`` and
  ``hasten.job.outcome`` (``complete``, ``retry``, ``dead``, ``aborted``, ``interrupted``); a failed try records
  its exception (URLs redacted) and ERROR status, with a ``retry`` or ``dead_letter`` event. A retried job is one
  span per try, all children of (or linked to) the same producer span. Jobs refused before they are decoded
  (payload refused, expired) have no span.

- Sampling: a try follows its enqueue's decision. With the SDK's parent-based sampler (its default), a try whose
  enqueue was not sampled gets no span — the worker runs it in the enqueue's context, read from the payload
  itself, so its own spans and calls stay in the trace (``otel.JobTracer._skips_unsampled``): what a span would
  cost is paid only for the sampled share (README "Monitoring", "What it costs").

Off (the default), the client and the executor test :data:`active` once per job, and opentelemetry is not imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from .otel import JobTracer

#: the key of the trace context in arq's job dict (beside arq's ``f``, ``a``, ``k``, ``t``, ``et``)
TRACE_CONTEXT_KEY = "tc"

#: the tracer in use; None while tracing is off
active: JobTracer | None = None


def instrument(tracer_provider: TracerProvider | None = None, *, link: bool = False) -> None:
    """Trace enqueues and tries in this process from now on. ``link``: a try's span starts a trace of its own,
    linked to the enqueue's span, instead of being its child. Calling it again replaces the settings."""
    global active
    from .otel import JobTracer  # the otel extra, imported only now

    active = JobTracer(tracer_provider, link=link)


def uninstrument() -> None:
    """Stop tracing in this process."""
    global active
    active = None
