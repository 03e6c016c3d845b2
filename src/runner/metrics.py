"""The job metrics (prometheus-client): their names, and recording them at almost no cost per job.

Names follow Prometheus's conventions: one prefix, base units, labels ``queue`` and ``function`` (never job ids):

- ``hasten_jobs_enqueued_total`` (counted by the process that enqueues: a service, or a worker's cron ticks),
  ``hasten_jobs_started_total``, ``hasten_jobs_finished_total{outcome}``, ``hasten_jobs_running``,
  ``hasten_job_duration_seconds`` and ``hasten_job_queue_wait_seconds`` (histograms);
- ``hasten_worker_event_loop_lag_seconds``, from whatever measures it (:meth:`JobMetrics.read_loop_lag_from`);
- the queue gauges, read from Redis at scrape time by one process, are in ``queue_gauges.py``.

Cost: the hot path records a try in plain ints on a *meter* bound to the job's function once (no label lookup,
no lock, nothing built per job); :meth:`JobMetrics.flush` adds what the meters gathered to prometheus-client's
metrics — before each scrape of this process's endpoint, every :data:`FLUSH_EVERY_S` in the background (a
fleet's children, whose endpoint is the supervisor's), and when the worker stops. A worker killed with SIGKILL
loses the counts of its last second; its jobs' second tries are counted again where they run.

Multiprocess mode (several worker processes, one endpoint per host): :func:`use_multiprocess_dir` before any
metric exists; prometheus-client then writes each value to a file per process in that directory.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from .finish import OUTCOME_KINDS

if TYPE_CHECKING:
    from .finish import Outcome

#: upper bounds (s) of both histograms: a job, or a wait, from a millisecond to an hour
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
#: how often a worker that does not serve its own endpoint (a fleet's child) writes its meters to the directory
FLUSH_EVERY_S = 1.0
#: the ``function`` label of a job whose function this worker does not know (a name taken from a payload never
#: becomes a label: that would let any producer grow the number of series without bound)
UNKNOWN_FUNCTION = "<unknown>"

#: ``outcome`` label values: how a try ended (``finish.OUTCOME_KINDS``). A failure rate is ``failed + dead`` over
#: all finished tries, and ``dead`` alone is what needs a person.
OUTCOMES = OUTCOME_KINDS

# metric names, one source for this module, the queue gauges and the tests of the alert rules and dashboard
ENQUEUED = "hasten_jobs_enqueued"
STARTED = "hasten_jobs_started"
FINISHED = "hasten_jobs_finished"
RUNNING = "hasten_jobs_running"
DURATION = "hasten_job_duration_seconds"
QUEUE_WAIT = "hasten_job_queue_wait_seconds"
LOOP_LAG = "hasten_worker_event_loop_lag_seconds"


def outcome_label(outcome: Outcome) -> str:
    """The ``outcome`` label of a try's outcome (see :data:`OUTCOMES`)."""
    return outcome.kind


def use_multiprocess_dir(directory: Path) -> None:
    """Record into prometheus-client's multiprocess ``directory`` (per-process files that one endpoint adds up).
    Call before the first metric is made: prometheus-client picks its value class from the environment."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):  # imported before the variable was set
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class _Families:
    """The prometheus-client metrics themselves, made once per process (they register in the default registry,
    where a service exposing prometheus-client's registry finds ``hasten_jobs_enqueued_total`` too)."""

    def __init__(self) -> None:
        labels = ("queue", "function")
        self.enqueued = Counter(ENQUEUED, "Jobs written to a queue by this process.", labels)
        self.started = Counter(STARTED, "Tries started (claimed and begun) by this worker.", labels)
        self.finished = Counter(
            FINISHED, "Tries ended, by outcome: complete, failed (will retry), retried (put back without "
            "failing), aborted, dead (failed for good, dead-lettered).", (*labels, "outcome"),
        )  # fmt: skip
        # a fleet's endpoint adds the children that are alive (a dead child's running jobs run no more)
        self.running = Gauge(RUNNING, "Jobs running now.", labels, multiprocess_mode="livesum")
        self.duration = Histogram(DURATION, "How long a try took, from its start to its outcome.", labels,
                                  buckets=BUCKETS_S)  # fmt: skip
        self.queue_wait = Histogram(
            QUEUE_WAIT, "From a job's due time to its start (a deliberate defer and retry backoff are not waiting).",
            labels, buckets=BUCKETS_S,
        )  # fmt: skip
        self.loop_lag = Gauge(
            LOOP_LAG, "How late the worker's event loop runs a callback (a blocked loop delays every job).",
            ("queue",), multiprocess_mode="livemax",
        )  # fmt: skip


@lru_cache(maxsize=1)
def families() -> _Families:
    return _Families()


class EnqueueCounter:
    """``hasten_jobs_enqueued_total`` for a client: one increment per function and queue per call (enqueue is a
    Redis round trip; a lock here costs nothing next to it)."""

    def __init__(self) -> None:
        self._counter = families().enqueued

    def add(self, queue: str, function: str, n: int = 1) -> None:
        if n:
            self._counter.labels(queue, function).inc(n)


class _Histogram:
    """Observations gathered in ints, added to a prometheus-client histogram child by :meth:`flush`."""

    __slots__ = ("_child", "_counts", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._counts = [0] * (len(BUCKETS_S) + 1)  # the last is +Inf
        self._sum = 0.0

    def observe(self, value_s: float) -> None:
        # Prometheus's buckets hold values <= their bound: the first bound >= value
        self._counts[bisect.bisect_left(BUCKETS_S, value_s)] += 1
        self._sum += value_s

    def flush(self) -> None:
        if not any(self._counts):
            return
        # prometheus-client adds one observation at a time; these are its own parts (per-bucket values and the
        # sum), as Histogram.observe uses them, so that a second of observations is one write per bucket
        buckets = self._child._buckets
        for i, count in enumerate(self._counts):
            if count:
                buckets[i].inc(count)
                self._counts[i] = 0
        self._child._sum.inc(self._sum)
        self._sum = 0.0


class Meter:
    """One function's metrics in one queue: the hot path's counters, bound once."""

    __slots__ = ("_finished", "_finished_children", "_running_child", "_started_child", "duration", "queue_wait",
                 "running", "started")  # fmt: skip

    def __init__(self, f: _Families, queue: str, function: str) -> None:
        self.started = 0
        self.running = 0
        #: tries ended since the last flush, by outcome label
        self._finished = dict.fromkeys(OUTCOMES, 0)
        self._started_child = f.started.labels(queue, function)
        self._running_child = f.running.labels(queue, function)
        self._finished_children = {o: f.finished.labels(queue, function, o) for o in OUTCOMES}
        self.duration = _Histogram(f.duration.labels(queue, function))
        self.queue_wait = _Histogram(f.queue_wait.labels(queue, function))

    def finished(self, outcome: Outcome, duration_s: float) -> None:
        self._finished[outcome_label(outcome)] += 1
        self.running -= 1
        self.duration.observe(duration_s)

    def flush(self) -> None:
        if self.started:
            self._started_child.inc(self.started)
            self.started = 0
        for outcome, n in self._finished.items():
            if n:
                self._finished_children[outcome].inc(n)
                self._finished[outcome] = 0
        self._running_child.set(max(self.running, 0))
        self.duration.flush()
        self.queue_wait.flush()


class JobMetrics:
    """A worker's job metrics for one queue: :meth:`started` and :meth:`Meter.finished` on the hot path,
    :meth:`flush` off it."""

    def __init__(self, queue: str, functions: Iterable[str]) -> None:
        self._families = families()
        self._queue = queue
        # every function this worker runs gets its meter (and its series, at 0) up front
        self._meters = {name: Meter(self._families, queue, name) for name in (*functions, UNKNOWN_FUNCTION)}
        self._unknown = self._meters[UNKNOWN_FUNCTION]
        self._loop_lag: Callable[[], float | None] | None = None
        self.flush()

    def started(self, function: str, due_ms: int) -> Meter:
        """A try starts: counted, and its wait since the job's due time observed. Returns the function's meter,
        which the try's end is given to."""
        meter = self._meters.get(function, self._unknown)
        meter.started += 1
        meter.running += 1
        # a producer's clock ahead of ours would make the wait negative
        meter.queue_wait.observe(max(time.time() - due_ms / 1000, 0.0))
        return meter

    def read_loop_lag_from(self, source: Callable[[], float | None]) -> None:
        """Export ``hasten_worker_event_loop_lag_seconds`` from ``source`` (seconds, None: nothing measured yet),
        read at each flush. Until a source is given the gauge has no series: nothing measures the lag."""
        self._loop_lag = source

    def set_loop_lag(self, lag_s: float) -> None:
        """Set the loop lag directly (for a watchdog that pushes its measurement instead)."""
        self._families.loop_lag.labels(self._queue).set(lag_s)

    def flush(self) -> None:
        """Add what the meters gathered to prometheus-client's metrics (its values, or its multiprocess files)."""
        for meter in self._meters.values():
            meter.flush()
        if self._loop_lag is not None and (lag_s := self._loop_lag()) is not None:
            self.set_loop_lag(lag_s)
