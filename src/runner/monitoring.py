"""A worker's metrics and probes, when its :class:`~src.runner.metrics_config.MetricsConfig` asks for them.

Imported by the worker only then, so that a worker without monitoring loads neither prometheus-client nor the
endpoint. Alone, a worker serves its own endpoint (``/metrics`` with the queue gauges, ``/livez``, ``/readyz``);
in a fleet it records into the multiprocess directory, which the supervisor's endpoint adds up
(``metrics_fleet.py``), flushing its meters every :data:`~src.runner.metrics.FLUSH_EVERY_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from redis.asyncio import Redis

from .http_endpoint import Endpoint, Response
from .metrics import FLUSH_EVERY_S, EnqueueCounter, JobMetrics, use_multiprocess_dir
from .metrics_config import MetricsConfig
from .outage import RedisHealth
from .probes import WorkerReadiness, alive
from .queue_gauges import QueueGauges

if TYPE_CHECKING:
    from .pickup import Pickup

logger = logging.getLogger("hasten.metrics")

#: the text format every Prometheus reads (prometheus-client's newer default needs a newer Prometheus)
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_route(
    registries: Sequence[CollectorRegistry], before: Callable[[], Awaitable[None]] | None = None
) -> Callable[[], Awaitable[Response]]:
    """``/metrics`` over ``registries``; ``before`` is awaited first (flush the meters, read the queue gauges)."""

    async def render() -> Response:
        if before is not None:
            await before()
        return Response(200, b"".join(generate_latest(r) for r in registries), METRICS_CONTENT_TYPE)

    return render


class Monitoring:
    """Made when the worker is built (so that the executor gets its :attr:`metrics`), started once it runs."""

    def __init__(self, config: MetricsConfig, queue: str, functions: Iterable[str]) -> None:
        if config.multiprocess_dir is not None:
            use_multiprocess_dir(config.multiprocess_dir)
        self.config = config
        self.metrics = JobMetrics(queue, functions)
        #: the worker's own enqueues (its cron ticks)
        self.enqueue_counter = EnqueueCounter()
        self._queue = queue
        self._endpoint: Endpoint | None = None
        self._flusher: asyncio.Task[None] | None = None

    @property
    def port(self) -> int | None:
        """The port the endpoint listens on (the configured one, or the one chosen for port 0)."""
        return None if self._endpoint is None else self._endpoint.port

    async def start(self, redis: Redis, health: RedisHealth, pickup: Callable[[], Pickup | None]) -> None:
        config = self.config
        if not config.serves:
            self._flusher = asyncio.create_task(self._flush_every(), name="hasten-metrics-flush")
            if config.port is not None:
                logger.info("metrics: recorded into %s for the host's endpoint (its supervisor serves port %d)",
                            config.multiprocess_dir, config.port)  # fmt: skip
            return
        gauges = CollectorRegistry()
        queue_gauges = QueueGauges(redis, [self._queue]) if config.queue_gauges else None
        if queue_gauges is not None:
            gauges.register(queue_gauges)

        async def before() -> None:
            self.metrics.flush()
            if queue_gauges is not None:
                await queue_gauges.refresh()

        assert config.port is not None
        self._endpoint = await Endpoint({
            "/metrics": metrics_route([REGISTRY, gauges], before),
            "/livez": alive,
            "/readyz": WorkerReadiness(redis, health, pickup),
        }).start(config.host, config.port)  # fmt: skip
        logger.info("metrics and probes at http://%s:%d/metrics, /livez, /readyz", config.host, self._endpoint.port)

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            self.metrics.flush()

    async def close(self) -> None:
        """Stop serving, and write what the meters hold (a fleet's child: its last counts reach the directory)."""
        if self._endpoint is not None:
            await self._endpoint.close()
            self._endpoint = None
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        self.metrics.flush()
