"""OpenTelemetry: the enqueue's PRODUCER span and each try's CONSUMER span are one trace (or linked), recorded by
the SDK's in-memory exporter through an in-process worker on the real Redis."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest
from arq.connections import ArqRedis
from arq.worker import Worker as ArqWorker
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from src.runner import Codec, JobClient, JobFailed, otel, tracing
from src.runner import constants as k
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from tests import telemetry_jobs
from tests.conftest import ROOT, TEST_POLL_DELAY_S
from tests.waiting import wait_for


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(provider)
    yield exporter
    tracing.uninstrument()


def _of_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


async def _consumers(exporter: InMemorySpanExporter, n: int) -> list[ReadableSpan]:
    await wait_for(lambda: len(_of_kind(exporter, SpanKind.CONSUMER)) >= n)
    return _of_kind(exporter, SpanKind.CONSUMER)


async def test_an_enqueue_in_a_request_and_its_job_are_one_trace(
    client: JobClient, running_worker: Callable[..., Worker], spans: InMemorySpanExporter, provider: TracerProvider
) -> None:
    running_worker([telemetry_jobs.chatty])
    with provider.get_tracer("test").start_as_current_span("POST /orders") as request:
        handle = await client.enqueue(telemetry_jobs.chatty, word="hi")
    assert await handle.result(timeout_s=10) == "hi"
    [consumer] = await _consumers(spans, 1)
    [producer] = _of_kind(spans, SpanKind.PRODUCER)

    trace_id = request.get_span_context().trace_id
    assert producer.context is not None and consumer.context is not None
    assert producer.context.trace_id == consumer.context.trace_id == trace_id
    assert producer.parent is not None and producer.parent.span_id == request.get_span_context().span_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert producer.name == "send arq:queue" and consumer.name == "process arq:queue"
    assert producer.attributes is not None and consumer.attributes is not None
    assert dict(producer.attributes) == {
        "messaging.system": "hasten", "messaging.destination.name": "arq:queue", "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue", "hasten.job.function": "chatty", "messaging.message.id": handle.job_id,
    }  # fmt: skip
    assert dict(consumer.attributes) == {
        "messaging.system": "hasten", "messaging.destination.name": "arq:queue",
        "messaging.operation.type": "process", "messaging.operation.name": "process",
        "messaging.message.id": handle.job_id, "hasten.job.function": "chatty", "hasten.job.try": 1,
        "hasten.job.outcome": "complete",
    }  # fmt: skip
    assert consumer.status.status_code is StatusCode.UNSET


async def test_a_retried_job_has_a_span_per_try(
    client: JobClient, running_worker: Callable[..., Worker], spans: InMemorySpanExporter
) -> None:
    running_worker([telemetry_jobs.fails_once])
    handle = await client.enqueue(telemetry_jobs.fails_once)
    assert await handle.result(timeout_s=10) == 2
    first, second = sorted(await _consumers(spans, 2), key=lambda s: s.start_time or 0)
    [producer] = _of_kind(spans, SpanKind.PRODUCER)
    assert producer.context is not None
    for span in (first, second):
        assert span.parent is not None and span.parent.span_id == producer.context.span_id
    assert first.attributes is not None and second.attributes is not None
    assert (first.attributes["hasten.job.try"], first.attributes["hasten.job.outcome"]) == (1, "failed")
    assert first.status.status_code is StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception", "retry"]
    assert first.events[0].attributes is not None and first.events[0].attributes["exception.type"] == "ConnectionError"
    assert (second.attributes["hasten.job.try"], second.attributes["hasten.job.outcome"]) == (2, "complete")
    assert second.status.status_code is StatusCode.UNSET and not second.events


async def test_a_dead_letter_is_an_error_span_with_the_reason_and_a_redacted_message(
    client: JobClient, running_worker: Callable[..., Worker], spans: InMemorySpanExporter
) -> None:
    running_worker([telemetry_jobs.doomed])
    handle = await client.enqueue(telemetry_jobs.doomed)
    with pytest.raises(JobFailed):
        await handle.result(timeout_s=10)
    [span] = await _consumers(spans, 1)
    assert span.attributes is not None and span.attributes["hasten.job.outcome"] == "dead"
    exception, dead_letter = span.events
    assert dead_letter.name == "dead_letter" and dead_letter.attributes == {
        "hasten.dead_letter.reason": "tries exhausted"
    }
    assert exception.attributes is not None and "hunter2" not in str(dict(exception.attributes))
    assert span.status.description is not None and "user:***@" in span.status.description


async def test_link_instead_of_parent(
    client: JobClient, running_worker: Callable[..., Worker], spans: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracing.instrument(provider, link=True)
    running_worker([telemetry_jobs.chatty])
    handle = await client.enqueue(telemetry_jobs.chatty, word="hi")
    assert await handle.result(timeout_s=10) == "hi"
    [consumer] = await _consumers(spans, 1)
    [producer] = _of_kind(spans, SpanKind.PRODUCER)
    assert producer.context is not None and consumer.context is not None
    assert consumer.parent is None and consumer.context.trace_id != producer.context.trace_id
    [link] = consumer.links
    assert (link.context.trace_id, link.context.span_id) == (producer.context.trace_id, producer.context.span_id)


async def test_enqueue_many_is_one_producer_span_for_the_batch(
    client: JobClient, running_worker: Callable[..., Worker], spans: InMemorySpanExporter
) -> None:
    running_worker([telemetry_jobs.chatty])
    handles = await client.enqueue_many([telemetry_jobs.chatty.call(word=str(i)) for i in range(3)])
    assert [await h.result(timeout_s=10) for h in handles] == ["0", "1", "2"]
    consumers = await _consumers(spans, 3)
    [producer] = _of_kind(spans, SpanKind.PRODUCER)
    assert producer.attributes is not None and producer.attributes["messaging.batch.message_count"] == 3
    assert producer.context is not None
    assert {c.parent.span_id for c in consumers if c.parent} == {producer.context.span_id}


def _recorded(sampler: object) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(sampler=sampler)  # type: ignore[arg-type]  # a Sampler
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_a_job_whose_enqueue_was_not_sampled_runs_in_its_trace_without_a_span(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    """The usual production setting: the service samples a share of its traces, the worker follows its decision
    (the SDK's parent-based sampler) — no span for the try, and the job's own spans stay in the same trace."""
    provider, exported = _recorded(ParentBased(TraceIdRatioBased(0.0)))  # no trace sampled
    tracing.instrument(provider)
    try:
        running_worker([telemetry_jobs.current_span])
        with provider.get_tracer("test").start_as_current_span("POST /orders") as request:
            handle = await client.enqueue(telemetry_jobs.current_span)
        inside = await handle.result(timeout_s=10)
        assert tracing.active is not None and tracing.active._skips_unsampled()  # the cheap path was taken
    finally:
        tracing.uninstrument()
    trace_id = f"{request.get_span_context().trace_id:032x}"
    assert inside == {"trace_id": trace_id, "sampled": False, "recording": False}
    assert exported.get_finished_spans() == ()


async def test_a_sampler_that_is_not_parent_based_decides_every_try_itself(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    producer, _ = _recorded(ParentBased(TraceIdRatioBased(0.0)))
    tracing.instrument(producer)
    try:
        handle = await client.enqueue(telemetry_jobs.current_span)  # an unsampled trace context in the payload
        worker_provider, exported = _recorded(ALWAYS_ON)
        tracing.instrument(worker_provider)
        running_worker([telemetry_jobs.current_span])
        inside = await handle.result(timeout_s=10)
        assert tracing.active is not None and not tracing.active._skips_unsampled()
    finally:
        tracing.uninstrument()
    assert inside["recording"] is True and inside["sampled"] is True
    [consumer] = await _consumers(exported, 1)
    assert consumer.context is not None and f"{consumer.context.trace_id:032x}" == inside["trace_id"]


@pytest.mark.parametrize(
    "header",
    [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",
        " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
        "",
    ],
)
def test_the_payloads_traceparent_reads_as_the_propagator_reads_it(header: str) -> None:
    ours = trace.get_current_span(otel._extract({"traceparent": header})).get_span_context()
    theirs = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": header}))
    assert ours == theirs.get_span_context()


class TestSigned:
    @pytest.fixture
    def codec(self) -> Codec:
        return Codec("s3cret")

    async def test_a_changed_trace_context_is_refused_like_any_change(
        self, redis: ArqRedis, client: JobClient, running_worker: Callable[..., Worker], spans: InMemorySpanExporter
    ) -> None:
        handle = await client.enqueue(telemetry_jobs.chatty, word="hi")
        payload = await redis.get(k.job_key_prefix + handle.job_id)
        assert b'"traceparent":"00-' in payload
        forged = payload.replace(b'"traceparent":"00-', b'"traceparent":"00-f', 1).replace(b'-01"', b'1"', 1)
        assert forged != payload
        await redis.set(k.job_key_prefix + handle.job_id, forged)
        running_worker([telemetry_jobs.chatty])
        with pytest.raises(JobFailed, match="signature does not match"):
            await handle.result(timeout_s=10)


async def test_a_traced_job_runs_on_a_stock_arq_worker(
    redis: ArqRedis, client: JobClient, codec: Codec, spans: InMemorySpanExporter
) -> None:
    handle = await client.enqueue(telemetry_jobs.chatty, word="stock")
    assert b'"tc":{' in await redis.get(k.job_key_prefix + handle.job_id)
    stock = ArqWorker(
        [telemetry_jobs.chatty.arq_function()], redis_pool=redis, burst=True, poll_delay=TEST_POLL_DELAY_S,
        handle_signals=False, job_serializer=codec.dumps, job_deserializer=codec.loads,
    )  # fmt: skip
    await stock.main()
    assert await handle.result(timeout_s=5) == "stock"


def test_without_tracing_nothing_is_imported_or_traced(redis_server: RedisServer) -> None:
    """A client and a worker that run jobs, failing ones too, load neither opentelemetry nor Sentry nor the JSON
    formatter (a fresh interpreter: this test process has them all loaded)."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        from arq.connections import RedisSettings
        from src.runner import Codec, JobClient
        from src.runner.worker import Worker
        from tests import telemetry_jobs

        async def main():
            settings = RedisSettings(host="127.0.0.1", port={redis_server.port})
            client = await JobClient.connect(settings, Codec(), queue_name="{{no-telemetry}}")
            said = await client.enqueue(telemetry_jobs.chatty, word="x")
            await client.enqueue(telemetry_jobs.fails_once)
            worker = Worker(
                [telemetry_jobs.chatty, telemetry_jobs.fails_once], redis_settings=settings,
                queue_name="{{no-telemetry}}", burst=True, handle_signals=False, poll_delay=0.01,
            )
            await worker.main()
            await worker.close()
            assert await said.result(timeout_s=5) == "x"
            await client.close()
            roots = {{"opentelemetry", "sentry_sdk", "pythonjsonlogger"}}
            print(sorted(m for m in sys.modules if m.split(".")[0] in roots))

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_the_tracing_setting_switches_it_on(env: pytest.MonkeyPatch, redis: ArqRedis) -> None:
    from src.settings import get_settings

    env.setenv("JOBS_TRACING", "link")
    client = await get_settings().open_client()
    try:
        assert tracing.active is not None and tracing.active.link
    finally:
        tracing.uninstrument()
        await client.close()
