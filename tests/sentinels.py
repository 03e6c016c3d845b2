"""A Redis Sentinel deployment on loopback ports for the tests: a master, a replica and three sentinels, real
``redis-server`` processes (the sentinels run ``redis-server <conf> --sentinel``, which is what Debian's
``redis-sentinel`` runs)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from src.runner.redis_server import RedisServer, free_port

MASTER_NAME = "mymaster"
#: a master silent this long is down for the sentinels; then they elect one of them and fail over
DOWN_AFTER_MS = 1000


@dataclass
class SentinelGroup:
    data: RedisServer
    replica: RedisServer
    sentinels: list[RedisServer] = field(default_factory=list)

    @property
    def addresses(self) -> str:
        """``JOBS_REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def master_port(self) -> int:
        """The master's port as the first sentinel that answers knows it."""
        for s in self.sentinels:
            try:
                with redis.Redis(port=s.port, socket_timeout=1) as client:
                    _, port = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
                    return int(port)
            except redis.RedisError:
                continue
        raise RuntimeError("no sentinel answered")

    def server(self, port: int) -> RedisServer:
        return self.data if self.data.port == port else self.replica

    def stop(self) -> None:
        for server in (*self.sentinels, self.data, self.replica):
            server.kill()


def start_group(directory: Path) -> SentinelGroup:
    master = RedisServer(directory / "master", options={"save": "''", "appendonly": "no"}).start()
    replica = RedisServer(
        directory / "replica", options={"save": "''", "appendonly": "no", "replicaof": f"127.0.0.1 {master.port}"}
    ).start()
    group = SentinelGroup(master, replica)
    try:
        _wait(lambda: _replication(replica.port).get("master_link_status") == "up", "the replica in sync")
        for i in range(3):
            port = free_port()
            conf = directory / f"sentinel-{i}" / "sentinel.conf"
            conf.parent.mkdir(parents=True)
            conf.write_text(
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            group.sentinels.append(
                RedisServer(conf.parent, port=port, config_file=conf, options={"sentinel": ""}).start()
            )
        # every sentinel knows the replica and the two other sentinels: a failover can be agreed on
        for s in group.sentinels:
            _wait(lambda s=s: _knows_all(s.port), "the sentinels to find each other and the replica")
    except BaseException:
        group.stop()
        raise
    return group


def _knows_all(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=1) as client:
        replicas = client.execute_command("SENTINEL", "replicas", MASTER_NAME)
        others = client.execute_command("SENTINEL", "sentinels", MASTER_NAME)
    return len(replicas) == 1 and len(others) == 2


def _replication(port: int) -> dict[str, object]:
    with redis.Redis(port=port, socket_timeout=1) as client:
        return dict(client.info("replication"))


def _wait(condition: object, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")
