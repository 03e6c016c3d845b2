"""One metrics endpoint for a host's worker processes (``hasten worker --workers N``), whose counts add up.

prometheus-client's multiprocess mode: each worker process writes its values to files of its own in one directory
(``JOBS_METRICS_DIR``), and the supervisor's endpoint reads them all through a fresh registry with a
``MultiProcessCollector``. The supervisor calls:

- :func:`start_fleet_metrics` once, before it starts any worker: it empties the directory (files of an earlier run
  would add to the sums), and serves ``/metrics``, ``/livez`` and ``/readyz`` on ``JOBS_METRICS_PORT`` from a
  thread of its own (the supervisor's loop is not asyncio; the endpoint needs one). Workers started with
  :attr:`FleetMetrics.child_env` in their environment record into the directory and serve nothing themselves.
- :meth:`FleetMetrics.child_exited` with the pid of each worker that exited: its live gauges (running jobs, loop
  lag) leave the sums; its counters stay, as counters must.
- :meth:`FleetMetrics.close` when it stops.

Without ``JOBS_METRICS_DIR`` but with a port, a temporary directory is made (and removed by ``close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from arq.connections import ArqRedis, RedisSettings
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .http_endpoint import Endpoint
from .metrics_config import MetricsConfig
from .monitoring import metrics_route
from .outage import REDIS_DOWN
from .pools import create_pool
from .probes import HostReadiness, alive
from .queue_gauges import QueueGauges

logger = logging.getLogger("hasten.metrics")

#: the endpoint thread has this long to bind its port before start_fleet_metrics gives up
_START_TIMEOUT_S = 10.0


class FleetMetrics:
    """The host's metrics directory and endpoint (see the module's docstring)."""

    def __init__(self, directory: Path, *, temporary: bool) -> None:
        self.directory = directory
        self._temporary = temporary
        #: what a worker's environment needs to record into the directory (the supervisor passes it on)
        self.child_env = {"JOBS_METRICS_DIR": str(directory)}
        self._thread: _EndpointThread | None = None

    @property
    def port(self) -> int | None:
        return None if self._thread is None else self._thread.port

    def child_exited(self, pid: int) -> None:
        """A worker process exited (or was killed): its live gauges no longer count."""
        mark_process_dead(pid, str(self.directory))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)


def start_fleet_metrics(config: MetricsConfig | None, redis_settings: RedisSettings, queue: str) -> FleetMetrics | None:
    """Prepare the directory and start the host's endpoint; None when metrics are off (neither port nor dir)."""
    if config is None:
        return None
    temporary = config.multiprocess_dir is None
    directory = Path(tempfile.mkdtemp(prefix="hasten-metrics-")) if temporary else config.multiprocess_dir
    assert directory is not None
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # a previous run's processes: their counts are not this run's
        stale.unlink()
    fleet = FleetMetrics(directory, temporary=temporary)
    os.environ.update(fleet.child_env)  # for workers started with this process's environment
    if config.port is not None:
        fleet._thread = _EndpointThread(config, directory, redis_settings, queue)
        fleet._thread.start()
        if not fleet._thread.ready.wait(_START_TIMEOUT_S) or fleet._thread.error is not None:
            error = fleet._thread.error or "timed out"
            fleet.close()
            raise OSError(f"the metrics endpoint on {config.host}:{config.port} did not start: {error}")
        logger.info("metrics and probes of this host's workers at http://%s:%d/metrics, /livez, /readyz",
                    config.host, fleet.port)  # fmt: skip
    return fleet


class _EndpointThread(threading.Thread):
    """The endpoint in an event loop of its own, on a daemon thread."""

    def __init__(self, config: MetricsConfig, directory: Path, redis_settings: RedisSettings, queue: str) -> None:
        super().__init__(name="hasten-metrics-endpoint", daemon=True)
        self._config = config
        self._directory = directory
        self._redis_settings = redis_settings
        self._queue = queue
        self._redis: ArqRedis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.port: int | None = None

    def run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as e:  # reported by start_fleet_metrics, which waits on `ready`
            self.error = e
            self.ready.set()
        finally:
            self._loop.close()

    async def _connected(self) -> ArqRedis | None:
        """The endpoint's Redis connection, made on first need (Redis may be down when the fleet starts)."""
        if self._redis is None:
            with contextlib.suppress(*REDIS_DOWN, TimeoutError):
                async with asyncio.timeout(2.0):
                    self._redis = await create_pool(self._redis_settings)
        return self._redis

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self._directory))  # type: ignore[no-untyped-call]
        gauges = CollectorRegistry()
        queue_gauges: list[QueueGauges] = []

        async def before() -> None:
            redis = await self._connected()
            if redis is not None and self._config.queue_gauges and not queue_gauges:
                queue_gauges.append(QueueGauges(redis, [self._queue]))
                gauges.register(queue_gauges[0])
            if queue_gauges:
                await queue_gauges[0].refresh()

        readiness = HostReadiness(self._connected, self._queue)
        assert self._config.port is not None
        endpoint = await Endpoint({
            "/metrics": metrics_route([registry, gauges], before), "/livez": alive, "/readyz": readiness,
        }).start(self._config.host, self._config.port)  # fmt: skip
        self.port = endpoint.port
        self.ready.set()
        try:
            await self._stopping.wait()
        finally:
            await endpoint.close()
            if self._redis is not None:
                await self._redis.aclose()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout=5)
