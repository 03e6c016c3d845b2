"""The worker's startup heap, moved out of the garbage collector's full collections.

CPython's cyclic collector walks every tracked object of the generation it collects. After startup the oldest
generation holds what the worker imported and built — the application, its frameworks, SDKs such as Sentry's or
OpenTelemetry's — which lives as long as the process; a busy worker's churn still triggers a full collection every
few thousand jobs, and each walks all of it again (measured on a 10k no-op drain: 4-5 µs per job with Sentry
imported, a 20 ms pause each time; more in a large application). :func:`freeze_startup_heap`, called once the
worker's startup hooks have run, collects what startup left behind and then freezes the rest, as the ``gc`` module
documents for long-running servers: full collections then walk only what jobs allocated.

The cost: an object alive at startup that later becomes part of an unreachable cycle is not collected (objects freed
by reference counting, most of them, are freed as always).

It also makes young collections rarer (:data:`YOUNG_THRESHOLD` instead of 700 net new objects). A worker's jobs
allocate and free their objects by the hundred; with 100 jobs in flight, the default threshold is crossed every
few dozen jobs, and each collection walks the in-flight jobs' objects and moves them to an older generation, to be
walked again there (measured on a 20k drain with an I/O body: 806 young collections, about 3 µs of CPU per job;
with 5,000: 15). Garbage in cycles waits a little longer: at most a few thousand objects more.
"""

from __future__ import annotations

import gc

#: net new tracked objects that trigger a young collection once the heap is frozen (CPython's default: 700)
YOUNG_THRESHOLD = 5_000


def freeze_startup_heap() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
