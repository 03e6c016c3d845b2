"""Sync and process jobs for tests/runner/test_offload.py: plain ``def`` functions (the worker's thread pool) and
``process=True`` ones (its process pool; a child imports this module by name)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from arq.worker import Retry

from src.runner import NO_RETRY, Backoff, JobContext, Permanent, current_job, job


@job
def nap(ctx: JobContext, seconds: float) -> float:
    time.sleep(seconds)  # blocks its thread, not the loop
    return seconds


@job
def who(ctx: JobContext, word: str) -> dict[str, str | int]:
    return {"job_id": ctx.job_id, "try": ctx.job_try, "word": word.upper()}


@job(process=True)
def primes_below(ctx: JobContext, n: int) -> dict[str, int]:
    """CPU-bound: a sieve, and the process it ran in."""
    sieve = bytearray([1]) * n
    sieve[:2] = b"\0\0"
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return {"count": sum(sieve), "pid": os.getpid()}


def _spin(pid_file: str, seconds: float) -> int:
    Path(pid_file).write_text(str(os.getpid()))
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n


@job(process=True, retry=NO_RETRY)
def spin(ctx: JobContext, pid_file: str, seconds: float) -> int:
    """Busy for ``seconds`` (never awaits anything), after writing its process id to ``pid_file``."""
    return _spin(pid_file, seconds)


@job(process=True, retry=NO_RETRY, timeout_s=1.0)
def spin_past_timeout(ctx: JobContext, pid_file: str) -> int:
    return _spin(pid_file, 60.0)


@job(process=True, retry=NO_RETRY)
def raises(ctx: JobContext) -> None:
    raise ValueError("no good")


@job(process=True, retry=Backoff(max_tries=3, base_s=0.01))
def lies(ctx: JobContext) -> int:
    return "not a number"  # type: ignore[return-value]  # the result check is the point


@job(process=True, retry=Backoff(max_tries=3, base_s=0.01))
def dies_once(ctx: JobContext) -> int:
    if ctx.job_try == 1:
        os._exit(3)  # as a crash or the OOM killer would end it
    return ctx.job_try


@job(timeout_s=0.5, retry=NO_RETRY)
def stuck(ctx: JobContext) -> None:
    time.sleep(60)  # past its timeout, in a thread nobody can stop


class NoSuchOrder(Permanent):
    """A permanent error of the application's own."""


@job(process=True, retry=Backoff(max_tries=3, base_s=0.01))
def refuses(ctx: JobContext) -> None:
    raise NoSuchOrder("order 7 does not exist")


@job(process=True, retry=Backoff(max_tries=3, base_s=0.01, retry_on=(ConnectionError,)))
def flaky_connection(ctx: JobContext) -> int:
    if ctx.job_try < 3:
        raise ConnectionError(f"try {ctx.job_try}: refused")
    return ctx.job_try


@job(process=True, retry=Backoff(max_tries=3, base_s=0.01))
def asks_again(ctx: JobContext) -> int:
    if ctx.job_try == 1:
        raise Retry(defer=0.3)
    return ctx.job_try


@job(process=True, retry=Backoff(max_tries=3, base_s=0.01))
def too_big(ctx: JobContext) -> int:
    return 2**70  # valid for the annotation, not for JSON


def _impl(ctx: JobContext, n: int) -> int:
    return n * 2


heavy = job(process=True, name="heavy")(_impl)  # registered under another name than the function's


@job
def whose_context(ctx: JobContext) -> str:
    bound = current_job.current()
    return bound.job_id if bound else ""
