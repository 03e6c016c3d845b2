"""Looking through a queue and emptying it, a page at a time: ``hasten jobs list`` and ``hasten purge`` (and the
dashboard). Nothing here holds more than one page of ids in memory, and no call holds Redis for long, so both work
at a million jobs.

A job's state in the queue: **running** (its in-progress key exists), **queued** (due, not running), **retrying**
(due later, after a failed try: its try counter exists), **deferred** (due later, never tried) or **held** (by its
function's limit until a slot frees, ``limits.py``).

**Listing at a million jobs** (:func:`find_jobs`): the queue zset is ordered by due time, so a page of the
unfiltered list, a state (queued and running are due, deferred and retrying later) and a due-time range are a
range of it, read from a cursor — the last row examined, ``<due ms>:<job id>`` — in O(log N) plus the page,
whatever the depth (offset paging walks every row it skips). What the zset does not order — the function, which
lives in the payload, an id prefix, running among due — is filtered by a **bounded scan** (``scripts/list.lua``):
each call examines at most :data:`STEP_ROWS` rows (a few ms of Redis time), and a request stops after
:data:`SCAN_ROWS` rows or :data:`SCAN_TIME_S`, returning what it found with the cursor to continue from ("scanned
50,000 rows, 3 matches, continue from …"). A common function fills its page at once; a rare one may take several
requests to reach the end of the queue, but no request is slow and none blocks the workers. Functions are matched
by a plain search for ``"f":"<name>"`` in the payload inside Redis, then checked exactly on the decoded payload.

Chosen over a per-function index (a zset per queue and function, written by the enqueue script and cleaned by the
finish script): that would find a rare function's jobs at once, but costs every enqueue and finish a write, about
a hundred bytes of memory per job (~100 MB at a million), and would miss or go stale on jobs enqueued or finished
by stock arq, which writes no index. Offset paging (:func:`list_jobs`) stays for small queues and old callers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from redis.asyncio import Redis

from . import constants as k
from .scripts import script

JobState = Literal["queued", "running", "deferred", "retrying", "held"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "deferred", "retrying", "held")
#: rows read per round trip (purge)
PAGE_ROWS = 500
#: rows one call of the listing script examines at most: bounds how long one call holds Redis
STEP_ROWS = 5000
#: rows one listing request examines at most before it returns what it found, with its cursor
SCAN_ROWS = 50_000
#: and the time it spends at most (it stops after the call that passes it)
SCAN_TIME_S = 0.12


@dataclass(slots=True)
class QueuedJob:
    job_id: str
    state: JobState
    #: what the payload names (``?`` when it cannot be read: unsigned, another codec, or gone)
    function: str
    due_ms: int
    #: tries started so far
    tries: int
    enqueued_ms: int | None


@dataclass(slots=True)
class JobPage:
    """One page of a listing: the jobs, and where the next page starts."""

    jobs: list[QueuedJob]
    #: pass as ``cursor=`` for the next page; None when the range is exhausted (nothing after these)
    cursor: str | None
    #: rows examined for this page (filters that the due order does not answer examine more rows than they return)
    scanned: int


async def find_jobs(
    redis: Redis,
    loads: Callable[[bytes], Any],
    queue: str = k.default_queue_name,
    *,
    state: JobState | None = None,
    function: str | None = None,
    due_from_ms: int | None = None,
    due_to_ms: int | None = None,
    id_prefix: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    scan_rows: int = SCAN_ROWS,
    scan_time_s: float = SCAN_TIME_S,
) -> JobPage:
    """Up to ``limit`` jobs of ``queue`` in due order after ``cursor`` (a page's :attr:`JobPage.cursor`; None: the
    start), filtered by ``state``, ``function``, due time (``due_from_ms`` ≤ due ≤ ``due_to_ms``) and ``id_prefix``.
    Examines at most ``scan_rows`` rows (about ``scan_time_s``): a page with fewer jobs than ``limit`` and a cursor
    means "nothing more yet, continue from there". ``loads`` decodes a payload (the client's codec)."""
    now_ms = int(time.time() * 1000)
    low, high = _range(state, due_from_ms, due_to_ms, now_ms)
    after_score, _, after_id = (cursor or "").partition(":")
    if cursor is not None and not (_is_number(after_score) and after_id):
        raise ValueError(f"not a listing cursor: {cursor!r} (it reads <due ms>:<job id>)")
    token = b'"f":' + orjson.dumps(function) if function is not None else b""
    step = script(redis, "list")
    found: list[QueuedJob] = []
    scanned = 0
    started = time.monotonic()
    exhausted = low > high
    while not exhausted and len(found) < limit and scanned < scan_rows:
        args: list[bytes | str | int] = [
            now_ms, _bound(low), _bound(high), after_score, after_id, min(STEP_ROWS, scan_rows - scanned),
            limit - len(found), state or "", token, id_prefix or "",
        ]  # fmt: skip
        examined, last_score, last_id, done, *matches = await step(keys=[queue], args=args)
        scanned += examined
        exhausted = bool(done)
        if last_id is not None:
            after_score, after_id = last_score.decode(), last_id.decode()
        for i in range(0, len(matches), 5):
            row = _row(loads, *matches[i : i + 5])
            if function is None or row.function == function:
                found.append(row)
        if time.monotonic() - started > scan_time_s:
            break
    return JobPage(found, None if exhausted else f"{after_score}:{after_id}", scanned)


def _range(state: JobState | None, due_from_ms: int | None, due_to_ms: int | None, now_ms: int) -> tuple[float, float]:
    """The due-time range (inclusive) that ``state`` and the asked range leave."""
    low = float("-inf") if due_from_ms is None else float(due_from_ms)
    high = float("inf") if due_to_ms is None else float(due_to_ms)
    if state in ("queued", "running"):
        high = min(high, now_ms)
    elif state in ("deferred", "retrying"):
        low, high = max(low, now_ms + 1), min(high, k.HELD_SCORE_MS - 1)
    elif state == "held":  # held jobs sit at one far-future score; a due-time range does not apply to them
        low, high = k.HELD_SCORE_MS, float("inf")
    return low, high


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text and text.lower() not in ("nan", "inf", "-inf", "+inf", "infinity")


def _bound(value: float) -> str:
    if value in (float("inf"), float("-inf")):
        return "+inf" if value > 0 else "-inf"
    return str(int(value))


def _row(
    loads: Callable[[bytes], Any], raw_id: bytes, score: bytes, state: bytes, tries: int, payload: bytes | None
) -> QueuedJob:
    definition = _read(loads, payload)
    enqueued = definition.get("et")
    enqueued_ms = int(enqueued) if isinstance(enqueued, int | float) else None
    job_state: JobState = state.decode()  # type: ignore[assignment]  # one of JOB_STATES, from the script
    return QueuedJob(
        raw_id.decode(errors="replace"), job_state, str(definition.get("f", "?")), int(float(score)), int(tries),
        enqueued_ms,
    )  # fmt: skip


async def list_jobs(
    redis: Redis,
    loads: Callable[[bytes], Any],
    queue: str = k.default_queue_name,
    *,
    state: JobState | None = None,
    function: str | None = None,
    offset: int = 0,
    limit: int = 50,
    due_from_ms: int | None = None,
    due_to_ms: int | None = None,
    id_prefix: str | None = None,
) -> list[QueuedJob]:
    """Jobs in ``queue`` by due time, filtered as :func:`find_jobs` filters: the ``limit`` matches after skipping
    ``offset`` of them. Offset paging walks every row before the page (unbounded with a rare filter); prefer
    :func:`find_jobs` and its cursor at scale."""
    found: list[QueuedJob] = []
    cursor: str | None = None
    skip = offset
    while True:
        page = await find_jobs(
            redis, loads, queue, state=state, function=function, due_from_ms=due_from_ms, due_to_ms=due_to_ms,
            id_prefix=id_prefix, cursor=cursor, limit=skip + limit - len(found),
        )  # fmt: skip
        rows = page.jobs
        dropped = min(skip, len(rows))
        skip -= dropped
        found += rows[dropped:]
        if len(found) >= limit or page.cursor is None:
            return found[:limit]
        cursor = page.cursor


def _read(loads: Callable[[bytes], Any], payload: bytes | None) -> dict[str, Any]:
    if payload is None:
        return {}
    try:
        definition = loads(payload)
    except Exception:  # a payload this codec cannot read is listed as such, not an error of the listing
        return {}
    return definition if isinstance(definition, dict) else {}


async def purge_queue(
    redis: Redis, queue: str = k.default_queue_name, progress: Callable[[int, int], None] | None = None
) -> int:
    """Delete every job of ``queue`` that is not running (queued, deferred, retrying), a page per call of
    ``scripts/purge.lua``; running jobs are left to finish. ``progress(examined, deleted)`` after each page.
    Jobs enqueued while it runs may be deleted too, or not. Returns how many were deleted."""
    purge = script(redis, "purge")
    kept = examined = deleted = 0
    while True:
        seen, removed = await purge(keys=[queue], args=[kept, PAGE_ROWS])
        if not seen:
            return deleted
        examined += seen
        deleted += removed
        kept += seen - removed
        if progress is not None:
            progress(examined, deleted)
