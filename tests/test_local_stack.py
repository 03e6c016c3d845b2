"""`hasten run` (what `make run` starts) as a person meets it: the real command, signals sent to its process group
as a terminal sends them. Every test waits on conditions (a line printed, a process gone), never fixed sleeps, and
kills the launcher's group on failure; its children die with it (PR_SET_PDEATHSIG), which a test checks too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
import redis

from src.runner.fleet import die_with_parent
from src.runner.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
HASTEN = str(Path(sys.executable).parent / "hasten")
#: generous: the machine is small and shared
STARTUP_TIMEOUT_S = 90.0

pytestmark = pytest.mark.timeout(240)
#: the banner's last line, complete
_BANNER_END = re.compile(r"^  export JOBS_REDIS_URL=\S+\n", re.M)


@dataclass
class Launch:
    """A running `hasten run` and everything it printed so far (read by a thread, line by line)."""

    proc: subprocess.Popen[str]
    state_dir: Path
    api_port: int
    lines: list[str] = field(default_factory=list)
    web_port: int = 0

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def socket(self) -> Path:
        return self.state_dir / "redis" / "redis.sock"

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout_s}s; output:\n{self.output}")
            time.sleep(0.02)

    def wait_for_line(self, text: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        self.wait_for(lambda: text in self.output, timeout_s, repr(text))

    def wait_up(self) -> None:
        """Until the whole banner is read (its last line is the export): the lines come one by one."""
        self.wait_for(lambda: _BANNER_END.search(self.output) is not None or self.proc.poll() is not None,
                      STARTUP_TIMEOUT_S, "banner")  # fmt: skip
        assert _BANNER_END.search(self.output) is not None, self.output

    def ctrl_c(self) -> None:
        """What Ctrl-C in a terminal does: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def exit_code(self, timeout_s: float) -> int:
        self.wait_for(lambda: self.proc.poll() is not None, timeout_s, "exit")
        return self.proc.wait()

    def worker_pid(self) -> int:
        found = re.search(r"worker  pid (\d+)", self.output)
        assert found is not None, self.output
        return int(found[1])


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # short: the embedded Redis's socket lives in it, and a socket path must stay under ~100 bytes
    directory = Path(tempfile.mkdtemp(prefix="hs-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def launched(
    state_dir: Path,
    *,
    cwd: Path | None = None,
    preexec_fn: Callable[[], object] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Launch]:
    env = dict(env or {})
    api_port = int(env.pop("JOBS_API_PORT", free_port()))
    web_port = int(env.pop("JOBS_DASHBOARD_PORT", free_port()))
    environ = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    environ |= {"JOBS_STATE_DIR": str(state_dir), "JOBS_API_PORT": str(api_port), "COLUMNS": "80", **env}
    environ["JOBS_DASHBOARD_PORT"] = str(web_port)
    # the launcher dies with this test process too (however pytest ends), and its children with it
    die = die_with_parent(signal.SIGKILL)

    def preexec() -> None:
        if die is not None:
            die()
        if preexec_fn is not None:
            preexec_fn()

    proc = subprocess.Popen(
        [HASTEN, "run"], cwd=cwd or state_dir, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=preexec,
    )  # fmt: skip
    launch = Launch(proc, state_dir, api_port, web_port=web_port)
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: launch.lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        yield launch
    finally:
        if proc.poll() is None:  # a failed test: take the launcher's group down; its children die with it
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=10)
        stdout.close()


def _gone(pid: int) -> bool:
    """The process exited (a zombie nobody reaped yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def _redis_running(sock: Path) -> bool:
    """A redis-server process for this socket is alive: stricter than the socket not answering, since a Redis
    that refuses to exit (it could not save) may still be shutting down or stay up with nobody to stop it."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if f"unixsocket:{sock}" in (stat.parent / "cmdline").read_text() and not _gone(int(stat.parent.name)):
                return True
    return False


def test_run_starts_everything_and_stops_cleanly(state_dir: Path) -> None:
    with launched(state_dir) as launch:
        launch.wait_up()
        # the banner comes when the API listens: no retry loop needed
        receipt = httpx2.post(f"http://127.0.0.1:{launch.api_port}/demo", timeout=30).json()
        assert receipt["status_code"] == 200
        # the dashboard is up too, on loopback without credentials, and its URL is in the banner
        assert f"\n  web     http://127.0.0.1:{launch.web_port}/  (the dashboard)\n" in launch.output
        overview = httpx2.get(f"http://127.0.0.1:{launch.web_port}/", timeout=30)
        assert overview.status_code == 200 and "Workers alive" in overview.text
        # whole lines, to copy: never wrapped inside a command (the terminal here is 80 columns)
        assert f"\n  curl -X POST http://127.0.0.1:{launch.api_port}/demo\n" in launch.output
        assert f"\n  export JOBS_REDIS_URL=unix://{launch.socket}\n" in launch.output
        assert launch.socket.stat().st_mode & 0o777 == 0o700  # only its owner may connect
        worker = launch.worker_pid()
        launch.ctrl_c()
        assert launch.exit_code(60) == 0, launch.output
    output = launch.output
    # the worker got exactly one signal, the user's, from the launcher, and drained with its grace period
    assert "INFO hasten.worker: shutdown on SIGINT: taking no new jobs" in output, output
    assert "shutdown on SIGTERM" not in output
    # one format for every log line (arq's loggers are configured alike; our worker logs its own stop)
    stop_line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO hasten\.worker: stopping on SIGINT"
    assert re.search(stop_line, output, re.M), output
    assert output.rstrip().endswith("stopped")
    assert _gone(worker) and not _redis_running(launch.socket)
    assert any((state_dir / "redis").rglob("*.aof")), "embedded Redis should persist with AOF"


def test_second_ctrl_c_stops_a_busy_stack_now(state_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as hanging:  # accepts connections, never answers
        hook = f"http://127.0.0.1:{hanging.getsockname()[1]}/hook"
        env = {"JOBS_SHUTDOWN_GRACE_S": "120", "JOBS_WEBHOOK_TIMEOUT_S": "120"}
        with launched(state_dir, env=env) as launch:
            launch.wait_up()
            delivery = {"url": hook, "event": "order.paid", "payload": {}}
            assert httpx2.post(f"http://127.0.0.1:{launch.api_port}/webhooks", json=delivery, timeout=30).is_success
            with redis.Redis(unix_socket_path=str(launch.socket)) as r:
                launch.wait_for(lambda: bool(r.keys("arq:in-progress:*")), 30, "running job")
            worker = launch.worker_pid()
            launch.ctrl_c()
            launch.wait_for_line("waiting up to 120s for 1 running")
            stopping = time.monotonic()
            launch.ctrl_c()
            assert launch.exit_code(60) == 0, launch.output
            assert time.monotonic() - stopping < 30  # not the 120 s grace period
            assert _gone(worker) and not _redis_running(launch.socket), launch.output


def test_sigint_ignored_at_start_still_stops_it(state_dir: Path) -> None:
    """A launcher started in the background by a non-interactive shell inherits SIGINT ignored."""
    with launched(state_dir, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) as launch:
        launch.wait_up()
        launch.ctrl_c()
        assert launch.exit_code(60) == 0, launch.output
        assert not _redis_running(launch.socket)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children die with the launcher on Linux only")
def test_a_killed_launcher_leaves_nothing_running(state_dir: Path) -> None:
    with launched(state_dir) as launch:
        launch.wait_up()
        worker = launch.worker_pid()
        os.kill(launch.proc.pid, signal.SIGKILL)
        launch.proc.wait()
        launch.wait_for(lambda: _gone(worker) and not _redis_running(launch.socket), 30, "worker and Redis gone")


def test_a_running_embedded_redis_is_refused(state_dir: Path) -> None:
    sock = state_dir / "redis" / "redis.sock"
    leftover = RedisServer(sock.parent, unix_socket=sock, options={"save": "''", "appendonly": "no"}).start()
    try:
        with launched(state_dir) as launch:
            assert launch.exit_code(60) == 1
        assert launch.output.strip().splitlines() == [
            f"error: an embedded Redis already runs on {sock} (another `make run` here?): stop it (Ctrl-C there, or "
            f"`redis-cli -s {sock} shutdown`), or set JOBS_STATE_DIR to run a second one"
        ]
        assert leftover.ping()  # untouched
    finally:
        leftover.stop()


def test_a_taken_api_port_is_refused_before_anything_starts(state_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with launched(state_dir, env={"JOBS_API_PORT": str(port)}) as launch:
            assert launch.exit_code(60) == 1
    assert launch.output.strip().splitlines() == [
        f"error: the API's port 127.0.0.1:{port} is taken (Address already in use): stop what listens there, or set "
        "JOBS_API_PORT to a free port"
    ]
    assert not (state_dir / "redis").exists()  # no Redis was started


def test_redis_url_in_dotenv_is_used_and_checked_first(state_dir: Path, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("JOBS_REDIS_URL=redis://:hunter2@127.0.0.1:1/0\n")
    started = time.monotonic()
    with launched(state_dir, cwd=tmp_path) as launch:
        assert launch.exit_code(60) == 1
    assert time.monotonic() - started < 30
    assert launch.output.strip().splitlines() == [
        "error: cannot reach Redis at redis://:***@127.0.0.1:1/0 (set JOBS_REDIS_URL): Connection refused"
    ]


def test_a_redis_url_is_used_instead_of_the_embedded_one(state_dir: Path, redis_server: RedisServer) -> None:
    with launched(state_dir, env={"JOBS_REDIS_URL": redis_server.url}) as launch:
        launch.wait_up()
        receipt = httpx2.post(f"http://127.0.0.1:{launch.api_port}/demo", timeout=30).json()
        assert receipt["status_code"] == 200
        # the dashboard is up too, on loopback without credentials, and its URL is in the banner
        assert f"\n  web     http://127.0.0.1:{launch.web_port}/  (the dashboard)\n" in launch.output
        overview = httpx2.get(f"http://127.0.0.1:{launch.web_port}/", timeout=30)
        assert overview.status_code == 200 and "Workers alive" in overview.text
        assert f"  redis   {redis_server.url}\n" in launch.output  # not "(embedded)"
        launch.ctrl_c()
        assert launch.exit_code(60) == 0, launch.output
    assert not (state_dir / "redis").exists()
    assert redis_server.ping()  # not ours to stop


def test_a_bad_cron_entry_stops_make_run_with_its_name(state_dir: Path, tmp_path: Path) -> None:
    """The README's example mistake in src/cron.py, met under `make run`: the worker names the entry, and the
    launcher stops the rest instead of serving an API without a worker."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent("""
            import sys, types

            def __getattr__(name):  # stands in for src/cron.py with a typo in it
                if name != "TABLE":
                    raise AttributeError(name)
                from src.jobs.maintenance import record_queue_health
                from src.runner import cron
                return [cron("nightly-report", "30 2 * * *", record_queue_health, tz="Europe/Berln")]

            table = types.ModuleType("src.cron")
            table.__getattr__ = __getattr__
            sys.modules["src.cron"] = table
        """)
    )
    with launched(state_dir, env={"PYTHONPATH": str(tmp_path)}) as launch:
        assert launch.exit_code(STARTUP_TIMEOUT_S) == 1
    assert "error: cron entry 'nightly-report': unknown time zone 'Europe/Berln' (use an IANA name)" in launch.output
    assert "the worker exited with code 1; stopping the rest" in launch.output
    assert "hasten is up" not in launch.output
    assert not _redis_running(launch.socket)
