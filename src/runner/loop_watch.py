"""Noticing a blocked event loop: a job that calls ``time.sleep``, ``requests`` or crunches numbers without
awaiting stops every other job of its worker, and its lease renewals, timeouts and health record with them.

:class:`LoopWatch` has two small parts:

- a task on the loop sleeps :data:`LOOK_EVERY_S` at a time and measures how late it wakes: the loop's lag, kept
  in :attr:`LoopWatch.lag_s` (the last look) and :attr:`LoopWatch.max_lag_s` (the worst so far) for a gauge. A
  timer is late by the part of a block that outlasts its sleep, so a block of ``warn_s`` + 0.25 s or longer is
  always reported, a shorter one past ``warn_s`` sometimes;
- a daemon thread watches the task's beat. While the beat is overdue the loop is blocked *now*, so the thread
  notes which task is running (``asyncio.current_task(loop)``, readable from another thread). That names the job
  that blocked even when it finishes within the same step and has left the registry before the loop looks again.

When the loop wakes ``warn_s`` late or more, the task logs one WARNING naming what the thread caught, or, for a
block too short for the thread to see, the jobs that were running. Cost: four timer wake-ups a second on the loop
and ten short looks a second in the thread; nothing per job.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from .running import RunningJobs

logger = logging.getLogger("hasten.worker")

#: the task's sleep between two measurements of the loop's lag
LOOK_EVERY_S = 0.25
#: how often the thread looks at the task's beat: under half of the shortest block worth catching after the beat
#: went overdue, so a block just past the default threshold is caught
THREAD_LOOK_EVERY_S = 0.1
#: a loop lagging this much (or more) is logged, with the jobs that blocked it
DEFAULT_LOOP_LAG_WARN_S = 0.5


class LoopWatch:
    """Measures the event loop's lag and logs the jobs that blocked it; see the module docstring."""

    def __init__(self, running: RunningJobs, warn_s: float = DEFAULT_LOOP_LAG_WARN_S) -> None:
        self._running = running
        #: 0 turns the warning (and the thread) off; the lag is still measured
        self.warn_s = warn_s
        #: the loop's lag at the last look, in seconds
        self.lag_s = 0.0
        #: the largest lag seen since the watch started, in seconds
        self.max_lag_s = 0.0
        #: the largest lag since :meth:`take_window_max` was last called (the heartbeat's window)
        self._window_max_s = 0.0
        #: lag measurements so far
        self.looks = 0
        #: monotonic time the task went to sleep last (the thread reads it)
        self._beat = time.monotonic()
        #: (beat, what was running) noted by the thread during the block that followed that beat
        self._caught: tuple[float, list[str]] | None = None

    async def run(self) -> None:
        """Measure until cancelled; with a threshold, the thread runs for as long."""
        stop = threading.Event()
        if self.warn_s > 0:
            loop = asyncio.get_running_loop()
            threading.Thread(target=self._watch, args=(loop, stop), name="hasten-loop-watch", daemon=True).start()
        try:
            while True:
                beat = self._beat = time.monotonic()
                await asyncio.sleep(LOOK_EVERY_S)
                self.lag_s = lag_s = max(time.monotonic() - beat - LOOK_EVERY_S, 0.0)
                self.max_lag_s = max(self.max_lag_s, lag_s)
                self._window_max_s = max(self._window_max_s, lag_s)
                self.looks += 1
                if 0 < self.warn_s <= lag_s:
                    self._warn(lag_s, beat)
        finally:
            stop.set()

    def take_window_max(self) -> float:
        """The largest lag since the last call (seconds), and start a new window: what each heartbeat reports."""
        window, self._window_max_s = self._window_max_s, 0.0
        return window

    def _warn(self, lag_s: float, beat: float) -> None:
        caught = self._caught
        if caught is not None and caught[0] == beat:
            logger.warning(
                "event loop %.2fs late (warns at %gs), blocked by %s: every other job of this worker waited; "
                "blocking calls (time.sleep, requests, heavy CPU) belong in `await asyncio.to_thread(...)`",
                lag_s, self.warn_s, ", ".join(caught[1]),
            )  # fmt: skip
            return
        running = [_describe(entry.job_id, entry.function) for entry in self._running]
        logger.warning(
            "event loop %.2fs late (warns at %gs), no blocking task caught (a short block, or an overloaded or "
            "paused machine); running then: %s",
            lag_s, self.warn_s, ", ".join(running) or "no job",
        )  # fmt: skip

    def _watch(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """The thread: while the beat is overdue, note what runs on the loop (once per block)."""
        while not stop.wait(THREAD_LOOK_EVERY_S):
            beat = self._beat
            if time.monotonic() - beat < LOOK_EVERY_S + THREAD_LOOK_EVERY_S:
                continue
            if self._caught is not None and self._caught[0] == beat:
                continue
            culprits = self._blamed(asyncio.current_task(loop))
            if culprits:
                self._caught = (beat, culprits)

    def _blamed(self, task: asyncio.Task[object] | None) -> list[str]:
        """The job whose task is ``task``, else that task's name (one of the worker's own tasks)."""
        if task is None:  # a plain callback, or the loop is waiting (the whole process was held up)
            return []
        jobs = [_describe(entry.job_id, entry.function) for entry in self._running if entry.task is task]
        return jobs or [f"the task {task.get_name()!r}"]


def _describe(job_id: str, function: str) -> str:
    return f"job {job_id} ({function or 'function not known yet'})"
