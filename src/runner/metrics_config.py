"""What a worker's monitoring is set to: the HTTP endpoint (metrics and health probes) and prometheus-client's
multiprocess directory. Kept apart from the modules that use it so that a worker without monitoring imports
neither prometheus-client nor the endpoint (``monitoring.py`` is imported only when this is set)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``port``: serve ``/metrics``, ``/livez`` and ``/readyz`` there (None: no endpoint in this process).
    ``multiprocess_dir``: record into prometheus-client's multiprocess directory for a host endpoint that adds up
    several worker processes (``hasten worker --workers N``); a worker with a directory never serves itself: the
    fleet's supervisor does (``metrics_fleet.py``). ``queue_gauges``: the endpoint reads the queue gauges from
    Redis at scrape time (turn off on all but one endpoint when several hosts share a queue)."""

    port: int | None = None
    host: str = "127.0.0.1"
    multiprocess_dir: Path | None = None
    queue_gauges: bool = True

    @property
    def serves(self) -> bool:
        """This worker process serves the endpoint itself (no fleet directory)."""
        return self.port is not None and self.multiprocess_dir is None
