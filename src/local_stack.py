"""``hasten run`` (behind ``make run``): Redis, a worker, the example API and the dashboard, owned and stopped by one
process.

The launcher owns what it starts. Signals only *record* that they came (a handler that raised would cut the
clean-up short), and the loop acts on them:

- Ctrl-C (SIGINT) or SIGTERM/SIGHUP: the worker and the API get the same signal once (SIGINT for Ctrl-C, so the
  worker logs what the user did) and drain; the embedded Redis stops last, with its data written.
- A second signal: forwarded again, which makes the worker give its running jobs back at once; whatever is
  still up after a few seconds is killed. A third kills at once. Redis is stopped either way.
- Children run in sessions of their own, so the terminal's Ctrl-C reaches only the launcher (a worker that got
  it too would count the launcher's signal as a second one and skip its grace period). On Linux they are also
  told to die with the launcher (``PR_SET_PDEATHSIG``): a launcher killed with SIGKILL leaves nothing behind.

Redis is checked before anything else starts: a ``JOBS_REDIS_URL`` (environment or ``.env``) that does not
answer, an embedded Redis that already runs in this state dir, or a taken API port each stop the launch with
one line that says what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from src.runner import logs
from src.runner.errors import JobsError
from src.runner.fleet import die_with_parent, signals_recorded
from src.runner.preflight import check_redis, sync_client
from src.runner.redis_server import RedisServer
from src.runner.redis_url import redacted, redis_settings
from src.settings import PROJECT_DIR, Settings

#: a unix socket path longer than this does not fit ``sockaddr_un`` on every system (Linux 107, macOS 103)
_MAX_SOCKET_PATH = 100
#: after a second signal, how long children get before they are killed
_FORCE_STOP_S = 5.0
#: how often the launcher looks at its children and at the signals that came
_TICK_S = 0.1


class StackError(JobsError):
    """The local stack cannot start; the message says why and what to do."""


@dataclass
class LocalStack:
    settings: Settings
    console: Console
    #: signals received, in order (handlers only append; the loop acts)
    received: list[signal.Signals] = field(default_factory=list)
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    redis: RedisServer | None = None

    # signals --------------------------------------------------------------------------------------------
    def signals_caught(self) -> contextlib.AbstractContextManager[None]:
        """Record SIGINT/SIGTERM/SIGHUP instead of dying (also when started with SIGINT ignored)."""
        return signals_recorded(self.received)

    # start ----------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Start everything, print where it listens, and supervise until a signal or a child's exit."""
        self._refuse_a_second_embedded_redis()  # before the API port: a second `make run` here holds both
        self._check_port(self.settings.api_host, self.settings.api_port, "API", "JOBS_API_PORT")
        self._check_port(self.settings.dashboard_host, self.settings.dashboard_port, "dashboard", "JOBS_DASHBOARD_PORT")
        redis_url = self.start_redis()
        if self.received:
            return 0
        env = {**os.environ, "JOBS_REDIS_URL": redis_url}
        # the demo's webhook goes to the example API on loopback, which webhooks reach only when allowed (README,
        # Security); a setting of the user's own stands
        if "webhook_allowed_networks" not in self.settings.model_fields_set:
            env["JOBS_WEBHOOK_ALLOWED_NETWORKS"] = '["127.0.0.1/32", "::1/128"]'
        die = die_with_parent(signal.SIGKILL)
        before = self._health_record()
        self.children["worker"] = subprocess.Popen(
            [sys.executable, "-m", "src.cli", "worker"], env=env, cwd=PROJECT_DIR, start_new_session=True,
            preexec_fn=die,
        )  # fmt: skip
        s = self.settings
        self.children["API"] = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host", s.api_host,
             "--port", str(s.api_port), "--log-level", "warning", "--log-config", str(self._api_log_config())],
            env=env, cwd=PROJECT_DIR, start_new_session=True, preexec_fn=die,
        )  # fmt: skip
        self.children["dashboard"] = subprocess.Popen(
            [sys.executable, "-m", "src.cli", "web"], env=env, cwd=PROJECT_DIR, start_new_session=True, preexec_fn=die,
        )  # fmt: skip
        if not self._wait_ready(before):
            return 0 if self.received else 1
        self._banner(redis_url)
        while not self.received:
            if (exited := self._exited()) is not None:
                return exited
            time.sleep(_TICK_S)
        return 0

    def start_redis(self) -> str:
        """Check ``JOBS_REDIS_URL``'s Redis, or start the embedded one; the URL to use."""
        s = self.settings
        if s.redis_url:
            check_redis(s.redis_settings())
            self.console.print(f"redis     {redacted(s.redis_url)} (JOBS_REDIS_URL)", soft_wrap=True)
            return s.redis_url
        sock = s.embedded_socket
        if len(str(sock)) > _MAX_SOCKET_PATH:
            raise StackError(
                f"the embedded Redis's socket path {sock} is longer than {_MAX_SOCKET_PATH} characters: "
                "set JOBS_STATE_DIR to a shorter directory"
            )
        self._refuse_a_second_embedded_redis()
        self.console.print(f"redis     starting the embedded Redis (data in {sock.parent})", soft_wrap=True)
        self.redis = RedisServer(
            sock.parent, config_file=PROJECT_DIR / "deploy" / "redis.conf", unix_socket=sock,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )  # fmt: skip
        try:
            self.redis.start()
        except RuntimeError as e:  # not installed, or it exited at once (its log says why)
            raise StackError(f"the embedded Redis did not start: {e}") from None
        return self.redis.url

    def _refuse_a_second_embedded_redis(self) -> None:
        sock = self.settings.embedded_socket
        if not self.settings.redis_url and _answers(sock):
            raise StackError(
                f"an embedded Redis already runs on {sock} (another `make run` here?): stop it "
                f"(Ctrl-C there, or `redis-cli -s {sock} shutdown`), or set JOBS_STATE_DIR to run a second one"
            )

    def _check_port(self, host: str, port: int, what: str, setting: str) -> None:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no owner
            try:
                probe.bind((host, port))
            except OSError as e:
                raise StackError(
                    f"the {what}'s port {host}:{port} is taken ({e.strerror}): stop what listens there, "
                    f"or set {setting} to a free port"
                ) from None

    def _api_log_config(self) -> Path:
        """uvicorn's and the API's log lines in the worker's format (uvicorn reads a config only from a file)."""
        path = self.settings.state_dir / "api-logging.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        config = logs.log_config(self.settings.log_level, ("hasten", "arq", "uvicorn", "uvicorn.access"))
        path.write_text(json.dumps(config))
        return path

    def _health_record(self) -> bytes | None:
        with sync_client(redis_settings(self._url())) as r:
            value: bytes | None = r.get(self._health_key())
            return value

    def _wait_ready(self, health_before: bytes | None) -> bool:
        """Until the API and the dashboard accept connections and the worker wrote a fresh health record (False:
        gave up)."""
        api_up = web_up = worker_up = False
        with sync_client(redis_settings(self._url())) as r:
            while not (api_up and web_up and worker_up):
                if self.received:
                    return False
                if (exited := self._exited()) is not None:
                    return exited == 0
                api_up = api_up or _listens(self.settings.api_host, self.settings.api_port)
                web_up = web_up or _listens(self.settings.dashboard_host, self.settings.dashboard_port)
                worker_up = worker_up or r.get(self._health_key()) not in (None, health_before)
                time.sleep(_TICK_S)
        return True

    def _url(self) -> str:
        return self.redis.url if self.redis is not None else self.settings.redis_target()

    def _health_key(self) -> str:
        return self.settings.queue_name + ":health-check"  # arq's health_check_key_suffix

    def _banner(self, redis_url: str) -> None:
        s = self.settings
        api = f"http://{s.api_host}:{s.api_port}"
        shown = redacted(redis_url)
        lines = [
            "",
            "[bold green]hasten is up[/] (Ctrl-C stops everything)",
            f"  API     {api}",
            f"  docs    {api}/docs  (open it in a browser)",
            f"  web     http://{s.dashboard_host}:{s.dashboard_port}/  (the dashboard)",
            f"  worker  pid {self.children['worker'].pid}",
            f"  redis   {shown}" + (" (embedded)" if self.redis is not None else ""),
            "Try:",
            f"  curl -X POST {api}/demo",
            "Other commands of the README work as they are in a second terminal in this directory; elsewhere:",
            f"  export JOBS_REDIS_URL={shown}",
            "",
        ]
        for line in lines:
            self.console.print(line, soft_wrap=True, highlight=False)

    def _exited(self) -> int | None:
        """1 if a child or the embedded Redis exited by itself (said so), else None."""
        redis = self.redis.process if self.redis is not None else None
        for name, child in [*self.children.items(), *([("embedded Redis", redis)] if redis else [])]:
            if child.poll() is not None:
                self.console.print(f"[red]the {name} exited with code {child.returncode}; stopping the rest[/]")
                return 1
        return None

    # stop -----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the children (forwarding each signal that comes meanwhile), then Redis. Never interrupted."""
        started = bool(self.children) or self.redis is not None
        alive = [child for child in self.children.values() if child.poll() is None]
        if alive:
            first = self.received[0] if self.received else signal.SIGTERM
            forwarded = 1
            grace = self.settings.shutdown_grace_s
            self.console.print(
                f"stopping: running jobs get up to {grace:g}s to finish; Ctrl-C again to stop now", soft_wrap=True
            )
            _send(alive, signal.SIGINT if first is signal.SIGINT else signal.SIGTERM)
            kill_at = time.monotonic() + grace + 2 * _FORCE_STOP_S
            while alive := [child for child in alive if child.poll() is None]:
                if len(self.received) > forwarded:  # another signal: pass it on, then give them a short while
                    forwarded = len(self.received)
                    _send(alive, self.received[-1] if self.received[-1] is signal.SIGINT else signal.SIGTERM)
                    kill_at = min(kill_at, time.monotonic() + _FORCE_STOP_S)
                if time.monotonic() >= kill_at or forwarded >= 3:
                    _send(alive, signal.SIGKILL)
                    for child in alive:
                        child.wait()
                    break
                time.sleep(_TICK_S)
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if started:
            self.console.print("stopped")


def run(settings: Settings, console: Console) -> int:
    """The local stack until Ctrl-C; the exit code (0 after a signal, 1 when a part of it failed)."""
    stack = LocalStack(settings, console)
    with stack.signals_caught():
        try:
            return stack.run()
        finally:
            stack.stop()


def _send(children: list[subprocess.Popen[bytes]], sig: signal.Signals) -> None:
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)


def _answers(sock: Path) -> bool:
    """Whether something accepts connections on the unix socket ``sock``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(sock))
        except OSError:
            return False
    return True


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
