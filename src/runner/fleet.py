"""``hasten worker --workers N``: N worker processes under one supervisor, which owns them.

- **Crashes**: a worker that exits by itself is started again. One that had run for :data:`STABLE_S` is restarted at
  once; one that keeps dying sooner (a crash loop: a bad deploy, a database its start-up needs is down) waits
  0.5 s, 1 s, 2 s … up to :data:`MAX_BACKOFF_S` before each new try, and each exit is logged with the delay.
- **Recycling**: a worker that reached its ``--max-jobs-per-child`` or ``--max-memory-per-child`` drains and exits
  with :data:`~src.runner.recycle.RECYCLE_EXIT_CODE` (``recycle.py``); its replacement starts at once, no backoff.
- **Signals**: SIGTERM, SIGINT or SIGHUP is forwarded once to every worker (SIGINT as SIGINT, the others as
  SIGTERM), which drain: running jobs finish within ``JOBS_SHUTDOWN_GRACE_S``, none is taken. A second signal is
  forwarded again, which makes the workers put their running jobs back in the queue at once (their try unspent) —
  the same as a second signal to one worker. A third kills them (SIGKILL); their leases bring the jobs back.
  Nothing is restarted once a signal came.
- **Exit code**: once every worker has exited, 0 when each ended cleanly (exit code 0, recycled, or ended by the
  signal forwarded to it before it could install its handler), else 1.

Workers run in sessions of their own, so a terminal's Ctrl-C reaches only the supervisor (a worker that got it too
would count the forwarded copy as a second signal and skip its grace period), and on Linux each gets SIGTERM — a
graceful drain — if the supervisor dies (``PR_SET_PDEATHSIG``), so a supervisor killed with SIGKILL leaves no
worker behind. Signal handlers only record the signal; the supervisor's loop acts on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from .recycle import RECYCLE_EXIT_CODE

logger = logging.getLogger("hasten.fleet")

#: a worker that ran this long before it exited was not crash-looping: it is restarted at once
STABLE_S = 10.0
#: the wait before the second quick crash's restart; it doubles with each further one in a row
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
#: how often the supervisor looks at its workers and at the signals that came
TICK_S = 0.1
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def signals_recorded(received: list[signal.Signals]) -> Iterator[None]:
    """While inside: SIGTERM, SIGINT and SIGHUP are appended to ``received`` instead of acting (also when the
    process was started with SIGINT ignored); the handlers before are put back after. The caller's loop acts."""

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum))

    previous = {sig: signal.signal(sig, record) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child get ``sig`` when its parent dies (Linux; elsewhere None)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    return lambda: tie_to_parent(parent, sig)


def tie_to_parent(parent_pid: int, sig: signal.Signals) -> None:
    """In a child: get ``sig`` when the parent ``parent_pid`` dies (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # here, in the child: the worker that imports this module for it need not load ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


@dataclass
class Slot:
    """One of the N places in the fleet, and the worker process filling it."""

    number: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    #: exits in a row, each within STABLE_S of its start
    quick_crashes: int = 0
    #: monotonic time its next worker starts (None: none is due)
    start_at: float | None = None


class Fleet:
    """Runs ``command`` (one worker process) ``workers`` times and looks after them; see the module docstring."""

    def __init__(
        self,
        command: Sequence[str],
        workers: int,
        *,
        burst: bool = False,
        env: Mapping[str, str] | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.command = list(command)
        #: told the pid of every worker that exited (the host's metrics mark it dead)
        self._on_exit = on_exit
        self.env = dict(os.environ if env is None else env)
        #: ``--burst``: a worker that exits with code 0 has emptied the queue and is not replaced
        self.burst = burst
        self.slots = [Slot(number, start_at=0.0) for number in range(1, workers + 1)]
        #: signals received, in order (the handler only appends; the loop acts)
        self.received: list[signal.Signals] = []
        self._forwarded: list[signal.Signals] = []
        #: what the workers were sent: a worker ended by one of these before it installed its handler ended cleanly
        self._sent: set[int] = set()
        self._unclean: list[str] = []

    def run(self) -> int:
        """Supervise until every worker has exited; the exit code (see the module docstring)."""
        with signals_recorded(self.received):
            logger.info("fleet of %d workers (supervisor pid %d)", len(self.slots), os.getpid())
            while any(slot.proc is not None or slot.start_at is not None for slot in self.slots):
                self._forward_signals()
                for slot in self.slots:
                    self._look_after(slot)
                time.sleep(TICK_S)
        if self._unclean:
            logger.warning("fleet stopped; not cleanly: %s", "; ".join(self._unclean))
            return 1
        logger.info("fleet stopped")
        return 0

    # workers --------------------------------------------------------------------------------------------
    def _look_after(self, slot: Slot) -> None:
        if slot.proc is not None and (code := slot.proc.poll()) is not None:
            self._exited(slot, code)
        if slot.proc is None and slot.start_at is not None and time.monotonic() >= slot.start_at:
            self._start(slot)

    def _start(self, slot: Slot) -> None:
        slot.start_at = None
        slot.started_at = time.monotonic()
        slot.proc = subprocess.Popen(
            self.command, env=self.env, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )  # fmt: skip
        logger.info("worker %d started (pid %d)", slot.number, slot.proc.pid)

    def _exited(self, slot: Slot, code: int) -> None:
        assert slot.proc is not None
        pid, lived_s, slot.proc = slot.proc.pid, time.monotonic() - slot.started_at, None
        if self._on_exit is not None:
            self._on_exit(pid)
        ended = f"worker {slot.number} (pid {pid}) {_how(code)} after {lived_s:.1f}s"
        if self._forwarded:
            clean = code in (0, RECYCLE_EXIT_CODE) or -code in self._sent
            (logger.info if clean else logger.warning)("%s", ended)
            if not clean:
                self._unclean.append(ended)
            return
        if code == RECYCLE_EXIT_CODE:
            logger.info("%s: recycled; starting a fresh one", ended)
            slot.quick_crashes, slot.start_at = 0, time.monotonic()
            return
        if code == 0 and self.burst:
            logger.info("%s: the queue is empty (burst)", ended)
            return
        slot.quick_crashes = slot.quick_crashes + 1 if lived_s < STABLE_S else 0
        delay_s = backoff_s(slot.quick_crashes)
        slot.start_at = time.monotonic() + delay_s
        if slot.quick_crashes == 0:
            logger.warning("%s; restarting it now", ended)
        elif slot.quick_crashes == 1:
            logger.warning("%s; restarting it in %gs", ended, delay_s)
        else:
            logger.warning(
                "%s; crash loop: %d exits in a row, each within %gs of starting; restarting it in %gs",
                ended, slot.quick_crashes, STABLE_S, delay_s,
            )  # fmt: skip

    # signals --------------------------------------------------------------------------------------------
    def _forward_signals(self) -> None:
        while len(self._forwarded) < len(self.received):
            sig = self.received[len(self._forwarded)]
            self._forwarded.append(sig)
            alive = [slot.proc for slot in self.slots if slot.proc is not None and slot.proc.poll() is None]
            for slot in self.slots:
                slot.start_at = None  # nothing starts once a signal came
            if len(self._forwarded) >= 3:
                logger.warning("%s a third time: killing %d workers (their leases bring their jobs back)", sig.name,
                               len(alive))  # fmt: skip
                _send(alive, signal.SIGKILL)
                continue
            forward = signal.SIGINT if sig is signal.SIGINT else signal.SIGTERM
            if len(self._forwarded) == 1:
                logger.info(
                    "%s: %d workers drain (running jobs finish, no new ones); signal again to stop them now",
                    sig.name, len(alive),
                )  # fmt: skip
            else:
                logger.info("%s again: %d workers put their running jobs back and stop", sig.name, len(alive))
            self._sent.add(int(forward))
            _send(alive, forward)


def backoff_s(quick_crashes: int) -> float:
    """The wait before a worker's restart after ``quick_crashes`` quick exits in a row (0: the last was not quick)."""
    return 0.0 if quick_crashes == 0 else float(min(FIRST_BACKOFF_S * 2 ** (quick_crashes - 1), MAX_BACKOFF_S))


def _how(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _send(procs: list[subprocess.Popen[bytes]], sig: signal.Signals) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
