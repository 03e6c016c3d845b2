"""Retry policy of a job: how many tries, how long to wait between them, and which errors retry."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from arq.worker import Retry

from .errors import ArgumentsInvalid, ResultInvalid, UnknownJob

__all__ = ["NO_RETRY", "Backoff", "Permanent", "Retry"]


class Permanent(Exception):
    """Raise (or subclass) this from a job for a failure that no retry can fix, such as an HTTP 4xx."""


#: failures that say the job itself is wrong; retrying would fail the same way
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (Permanent, ArgumentsInvalid, ResultInvalid, UnknownJob)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: try *n* waits ``min(max_s, base_s * 2**(n-1))`` less up to ``jitter``.

    ``retry_on`` limits which exceptions retry (default: all but :data:`PERMANENT_ERRORS`);
    raising ``Retry(defer=…)`` from a job keeps arq's meaning and ignores the backoff.
    """

    max_tries: int = 5
    base_s: float = 1.0
    max_s: float = 300.0
    jitter: float = 0.5
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        if self.base_s < 0 or self.max_s < 0:
            raise ValueError("base_s and max_s must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def delay_s(self, job_try: int) -> float:
        """Seconds to wait after failed try number ``job_try`` (1-based)."""
        ceiling = min(self.max_s, self.base_s * 2.0 ** (job_try - 1))
        return ceiling * (1 - self.jitter * random.random())

    def retries(self, exc: BaseException, job_try: int) -> bool:
        """Whether failed try ``job_try`` that raised ``exc`` gets another try."""
        if job_try >= self.max_tries or isinstance(exc, PERMANENT_ERRORS):
            return False
        return isinstance(exc, self.retry_on)


#: one try only
NO_RETRY = Backoff(max_tries=1)
