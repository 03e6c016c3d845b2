"""Processes a test starts: their output goes to a log file under the test's ``tmp_path``, and they are stopped
at the end of the test.

The conftest shows the logs of a failed test's processes in its report, so a fault test that fails on a loaded
machine says what the worker was doing. Stopping is SIGTERM first (twice: a second signal stops a draining worker
at once), SIGKILL only for what is still up, so coverage's data of each worker is written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.waiting import SLOW_FACTOR, wait_for

ROOT = Path(__file__).resolve().parent.parent

#: lines of each log shown for a failed test
TAIL_LINES = 150


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    name: str
    log: Path
    group: bool  # a session leader: signals go to its process group (its children too)


@dataclass
class Spawner:
    """Starts processes with their stdout and stderr in one log file each; see the module docstring."""

    log_dir: Path
    started: list[Started] = field(default_factory=list)

    def __call__(
        self, args: Sequence[str], *, name: str, env: Mapping[str, str] | None = None, **popen: Any
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` in the project root; ``env`` is the whole environment (default: this process's)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{len(self.started):03d}-{name}.log"
        environ = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(args), cwd=popen.pop("cwd", ROOT), env=environ, stdout=out, stderr=subprocess.STDOUT, **popen
            )
        self.started.append(Started(proc, f"{name} (pid {proc.pid})", log, bool(popen.get("start_new_session"))))
        return proc

    def _find(self, proc: subprocess.Popen[bytes]) -> Started:
        return next(s for s in self.started if s.proc is proc)

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        """What ``proc`` wrote so far (all of it once it exited)."""
        return self._find(proc).log.read_text(errors="replace")

    async def wait_for_output(self, proc: subprocess.Popen[bytes], text: str, timeout_s: float = 20) -> None:
        """Until ``proc`` has written ``text``."""
        await wait_for(lambda: text in self.output(proc), timeout_s, message=f"{text!r} in the output of {proc.pid}")

    def logs(self) -> list[tuple[str, str]]:
        """(name, last lines of the log) of every process started."""
        shown = []
        for s in self.started:
            lines = s.log.read_text(errors="replace").splitlines() if s.log.exists() else []
            cut = [f"... {len(lines) - TAIL_LINES} lines before these", *lines[-TAIL_LINES:]]
            exit_code = s.proc.poll()
            status = "still running" if exit_code is None else f"exit code {exit_code}"
            shown.append((f"{s.name}, {status}: {s.log}", "\n".join(cut if len(lines) > TAIL_LINES else lines)))
        return shown

    def stop_all(self) -> None:
        """SIGTERM, again SIGTERM, then SIGKILL to whatever is still running."""
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            running = [s for s in self.started if s.proc.poll() is None]
            for s in running:
                _signal(s, sig)
            deadline = time.monotonic() + wait_s * SLOW_FACTOR
            for s in running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    s.proc.wait(timeout=max(deadline - time.monotonic(), 0.01))


def _signal(started: Started, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # exited meanwhile
        if started.group:
            os.killpg(started.proc.pid, sig)
        else:
            started.proc.send_signal(sig)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id is alive (a zombie, dead but not yet reaped by its parent, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
