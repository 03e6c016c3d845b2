"""How long jobs' tries take, per function: p50 and p95 over the last hour, across every worker of a queue, for
``hasten status`` and the dashboard.

The finish script records each try that ran a job's function in the same call that writes its outcome
(``scripts/finish.lua``): per queue and minute one hash, ``jobs:durations:<queue>:<minute>``, of counts by
``<function>|<bucket>``, kept two hours. Buckets are log-scale in microseconds, four per doubling (bucket ``b``
holds durations in ``(2**((b-1)/4), 2**(b/4)]`` µs), so one bucket spans ±9 % around its middle and a day fits in
under 150 buckets; a batch of outcomes costs one ``HINCRBY`` per distinct (function, bucket) in it, counted up
before the call. A percentile is read back as the middle (geometric) of the bucket it falls in: accurate to
about ±9 %, whatever the spread. Tries cut short by a worker's shutdown and jobs that never ran (refused payload,
unknown function) are not counted; a try whose outcome was not written because its worker lost the lease is (it
ran). Stock arq workers record nothing here.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from redis.asyncio import Redis

from . import constants as k

#: buckets per doubling of the duration
BUCKETS_PER_DOUBLING = 4


class FunctionDurations(NamedTuple):
    """Try durations of one function over a span (a tuple: ``p50_s, p95_s, tries``: the count of tries)."""

    p50_s: float
    p95_s: float
    tries: int


def bucket_of(duration_s: float) -> int:
    """The log-scale bucket of a try that took ``duration_s`` (0 holds everything up to 1 µs)."""
    micros = duration_s * 1_000_000
    return max(0, math.ceil(BUCKETS_PER_DOUBLING * math.log2(micros))) if micros > 1 else 0


def bucket_middle_s(bucket: int) -> float:
    """The geometric middle of ``bucket``, in seconds: what a percentile falling in it reads as."""
    return float(2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING) / 1_000_000) if bucket else 1e-6


def fields_of(tries: Iterable[tuple[str, float]]) -> Counter[str]:
    """Hash fields (``<function>|<bucket>``) and their counts for ``(function, duration_s)`` of tries."""
    return Counter(f"{function}|{bucket_of(duration_s)}" for function, duration_s in tries)


def _percentile_s(buckets: Counter[int], count: int, share: float) -> float:
    rank = max(1, math.ceil(share * count))
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return bucket_middle_s(bucket)
    return bucket_middle_s(max(buckets))  # unreachable with consistent counts


async def durations(redis: Redis, queue: str = k.default_queue_name, minutes: int = 60) -> dict[str, FunctionDurations]:
    """``{function: (p50_s, p95_s, count)}`` of the tries that ended in the last ``minutes`` minutes (the current
    one included) in ``queue``, across all workers; functions with no try are absent. One round trip."""
    this_minute = int(time.time() * 1000) // 60_000
    async with redis.pipeline(transaction=False) as pipe:
        for minute in range(this_minute - minutes + 1, this_minute + 1):
            pipe.hgetall(f"{k.DURATIONS_KEY_PREFIX}{queue}:{minute}")
        hashes = await pipe.execute()
    by_function: dict[str, Counter[int]] = {}
    for counts in hashes:
        for field, n in counts.items():
            function, _, bucket = field.decode(errors="replace").rpartition("|")
            if bucket.isdigit() and function:  # a field of another shape is not ours: skipped, not an error
                by_function.setdefault(function, Counter())[int(bucket)] += int(n)
    result = {}
    for function, buckets in sorted(by_function.items()):
        count = sum(buckets.values())
        if count > 0:
            result[function] = FunctionDurations(
                _percentile_s(buckets, count, 0.50), _percentile_s(buckets, count, 0.95), count
            )
    return result
