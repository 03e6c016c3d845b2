"""A local ``redis-server`` process: the embedded default of ``make run`` and the test suite's Redis.

It is the real server (Debian's ``redis-server``), started on a loopback port (tests) or on a unix socket
only its owner can open (the embedded default: no TCP port, so nothing else on the machine can reach it or
collide with it), with its own data directory, and stopped with SHUTDOWN so an AOF-backed instance exits
with its data written.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: how long a starting server may take to answer PING
_START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """``redis-server`` on ``127.0.0.1:port`` (or only on ``unix_socket``, mode 0700) with data under ``data_dir``;
    extra config lines in ``options``; ``preexec_fn`` runs in the child before ``redis-server`` starts."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    config_file: Path | None = None
    options: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    unix_socket: Path | None = None
    preexec_fn: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    def _connect(self, timeout_s: float) -> socket.socket:
        if self.unix_socket is not None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout_s)
            try:
                s.connect(str(self.unix_socket))
            except OSError:
                s.close()
                raise
            return s
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s)

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install -y redis-server)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [binary] + ([str(self.config_file)] if self.config_file else [])
        settings = {"port": str(self.port), "bind": "127.0.0.1", "dir": str(self.data_dir)}
        if self.unix_socket is not None:
            # only the owner may connect: the socket's mode, and its directory's (the data is private too)
            self.unix_socket.parent.mkdir(parents=True, exist_ok=True)
            self.unix_socket.parent.chmod(0o700)
            self.data_dir.chmod(0o700)
            settings = {"port": "0", "dir": str(self.data_dir), "unixsocket": str(self.unix_socket),
                        "unixsocketperm": "700"}  # fmt: skip
        settings.update(self.options)
        for key, value in settings.items():
            args += [f"--{key}", *value.split()]
        with (self.data_dir / "redis.log").open("ab") as log:
            # its own session: Ctrl-C in a terminal reaches only whoever started it, which stops it last
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=self.preexec_fn
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.data_dir}/redis.log")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer at {self.url} within {_START_TIMEOUT_S}s")

    def ping(self) -> bool:
        try:
            with self._connect(0.5) as s:
                s.sendall(b"PING\r\n")
                # a server with requirepass answers NOAUTH: it is up all the same
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self) -> None:
        """SHUTDOWN (persisting if configured), then make sure the process is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                with self._connect(1) as s:
                    s.sendall(b"SHUTDOWN\r\n")
                    s.recv(16)
            except OSError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the crash case, for fault tests."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
