"""``rediss://`` against a real redis-server with TLS on loopback, with certificates made here (trustme).

The server's certificate names ``localhost`` only. The client must check both that it chains to the CA it
trusts and that it names the host it dialled; a client certificate is required where the server asks for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from src.runner import JobClient
from src.runner.errors import RedisUnreachable
from src.runner.redis_server import RedisServer, free_port
from src.runner.worker import Worker
from src.settings import Settings
from tests.sample_jobs import add


@dataclasses.dataclass
class TlsRedis:
    tls_port: int
    ca_file: Path
    client_cert: Path
    client_key: Path
    other_ca_file: Path


def _files(tmp: Path) -> tuple[trustme.CA, dict[str, Path]]:
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost")
    client = ca.issue_cert("hasten-worker")
    paths = {name: tmp / f"{name}.pem" for name in ("ca", "other_ca", "server", "server_key", "client", "client_key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    other.cert_pem.write_to_path(str(paths["other_ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client"]))
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    return ca, paths


@pytest.fixture(scope="module")
def tls_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[bool], TlsRedis]]:
    """A TLS redis-server that does not ask for client certificates, and one that requires them."""
    tmp = tmp_path_factory.mktemp("tls")
    _, paths = _files(tmp)
    started: dict[bool, tuple[RedisServer, TlsRedis]] = {}

    def get(auth_clients: bool) -> TlsRedis:
        if auth_clients not in started:
            tls_port = free_port()
            options = {
                "save": "''", "appendonly": "no", "tls-port": str(tls_port),
                "tls-cert-file": str(paths["server"]), "tls-key-file": str(paths["server_key"]),
                "tls-ca-cert-file": str(paths["ca"]), "tls-auth-clients": "yes" if auth_clients else "no",
            }  # fmt: skip
            # the helper keeps its plain port on loopback for its own PING and SHUTDOWN; clients use tls_port
            server = RedisServer(tmp / f"redis-{auth_clients}", options=options).start()
            info = TlsRedis(tls_port, paths["ca"], paths["client"], paths["client_key"], paths["other_ca"])
            started[auth_clients] = (server, info)
        return started[auth_clients][1]

    yield get
    for server, _ in started.values():
        server.stop()


def _settings(monkeypatch: pytest.MonkeyPatch, url: str, **files: Path) -> Settings:
    monkeypatch.setenv("JOBS_REDIS_URL", url)
    for name, path in files.items():
        monkeypatch.setenv(f"JOBS_REDIS_{name.upper()}_FILE", str(path))
    return Settings()


async def _connect(settings: Settings) -> JobClient:
    # one try: arq would retry a refused handshake five times, a second apart
    once = dataclasses.replace(settings.redis_settings(), conn_retries=0)
    return await JobClient.connect(once, settings.codec())


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


async def test_right_ca_and_hostname_connect_and_a_job_runs_through_a_worker(
    tls_servers: Callable[[bool], TlsRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = tls_servers(False)
    settings = _settings(monkeypatch, f"rediss://localhost:{tls.tls_port}/0", ca=tls.ca_file)
    worker = Worker([add], redis_settings=settings.redis_settings(), handle_signals=False, poll_delay=0.01)
    task = asyncio.create_task(worker.async_run())
    try:
        async with await _connect(settings) as client:
            assert await (await client.enqueue(add, 1)).result(timeout_s=5) == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


async def test_a_certificate_for_another_name_is_refused(
    tls_servers: Callable[[bool], TlsRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = tls_servers(False)
    # the same server and a trusted CA, dialled as 127.0.0.1: its certificate names only "localhost"
    settings = _settings(monkeypatch, f"rediss://127.0.0.1:{tls.tls_port}/0", ca=tls.ca_file)
    with pytest.raises(RedisUnreachable, match=r"certificate verify failed.*(IP address|match)"):
        await _connect(settings)


async def test_an_unknown_ca_is_refused(
    tls_servers: Callable[[bool], TlsRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = tls_servers(False)
    with pytest.raises(RedisUnreachable, match="certificate verify failed"):
        await _connect(_settings(monkeypatch, f"rediss://localhost:{tls.tls_port}/0"))  # the system's CAs
    with pytest.raises(RedisUnreachable, match="certificate verify failed"):
        await _connect(_settings(monkeypatch, f"rediss://localhost:{tls.tls_port}/0", ca=tls.other_ca_file))


async def test_client_certificate_authentication(
    tls_servers: Callable[[bool], TlsRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = tls_servers(True)
    url = f"rediss://localhost:{tls.tls_port}/0"
    with pytest.raises(RedisUnreachable):
        client = await _connect(_settings(monkeypatch, url, ca=tls.ca_file))
        await client.close()
    settings = _settings(monkeypatch, url, ca=tls.ca_file, cert=tls.client_cert, key=tls.client_key)
    async with await _connect(settings) as client:
        handle = await client.enqueue(add, 1)
        assert await client.redis.exists(f"arq:job:{handle.job_id}") == 1
