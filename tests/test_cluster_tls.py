"""TLS and a password carry over to every connection to a Redis Cluster: the cluster client's, the worker's
blocking pop and the client's result subscription (both on connections of their own to one node), against a real
cluster node that takes TLS only from clients (``tls-cluster yes``) and requires a password."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from src.runner import JobClient
from src.runner.errors import RedisUnreachable
from src.runner.redis_server import RedisServer, free_port
from src.runner.worker import Worker
from src.settings import Settings
from tests.clusters import cluster_node
from tests.conftest import worker_running
from tests.sample_jobs import add

pytestmark = pytest.mark.timeout(60)

PASSWORD = "cluster-pw"


@dataclass
class TlsCluster:
    tls_port: int
    ca_file: Path


def _cli(port: int, *args: str) -> str:
    argv = ["redis-cli", "-p", str(port), "--no-auth-warning", "-a", PASSWORD, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[TlsCluster]:
    """One cluster node serving every slot, with TLS on ``tls_port`` (its certificate names 127.0.0.1, the address
    the cluster announces) and ``requirepass``; its plain port stays on loopback for redis-cli only."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    tls_port = free_port()
    node: RedisServer = cluster_node(tmp_path / "node")
    node.options |= {
        "tls-port": str(tls_port), "tls-cert-file": str(files["cert"]), "tls-key-file": str(files["key"]),
        "tls-ca-cert-file": str(files["ca"]), "tls-auth-clients": "no", "tls-cluster": "yes",
        "requirepass": PASSWORD, "masterauth": PASSWORD,
    }  # fmt: skip
    node.start()
    try:
        _cli(node.port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        deadline = time.monotonic() + 15
        while "cluster_state:ok" not in _cli(node.port, "CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the cluster is not ok"
            time.sleep(0.05)
        yield TlsCluster(tls_port, files["ca"])
    finally:
        node.kill()  # SHUTDOWN needs the password


async def test_a_worker_and_a_client_reach_a_tls_cluster_with_its_password(tls_cluster: TlsCluster) -> None:
    settings = Settings(
        redis_cluster=True, redis_url=f"rediss://:{PASSWORD}@127.0.0.1:{tls_cluster.tls_port}",
        redis_ca_file=tls_cluster.ca_file, queue_name="{secure}",
    )  # fmt: skip
    worker = Worker([add], redis_settings=settings.redis_settings(), queue_name="{secure}", handle_signals=False)
    client = await JobClient.connect(settings.redis_settings(), settings.codec(), queue_name="{secure}")
    try:
        async with worker_running(worker):
            started = time.monotonic()
            handles = [await client.enqueue(add, i, 1) for i in range(5)]
            # woken by the announcement (the subscription over TLS), each well within the 5 s re-read
            assert [await h.result(timeout_s=10) for h in handles] == [1, 2, 3, 4, 5]
            assert time.monotonic() - started < 5
            assert client._waiters is not None and client._waiters._node is not None  # subscribed on the node
            assert worker._wake is not None  # popping on a connection of its own to the node
            connection = worker._wake._conn.connection_pool.connection_kwargs
            assert connection["port"] == tls_cluster.tls_port and connection["password"] == PASSWORD
    finally:
        await client.close()


async def test_a_wrong_password_is_one_clear_line(tls_cluster: TlsCluster) -> None:
    settings = Settings(
        redis_cluster=True, redis_url=f"rediss://:wrong@127.0.0.1:{tls_cluster.tls_port}",
        redis_ca_file=tls_cluster.ca_file, queue_name="{secure}",
    )  # fmt: skip
    with pytest.raises(
        RedisUnreachable,
        match=r"cannot reach Redis at the Redis Cluster of node rediss://:\*\*\*@127.0.0.1:\d+ .*(password|auth)",
    ) as raised:
        await JobClient.connect(settings.redis_settings(), settings.codec())
    assert "wrong" not in str(raised.value)
