"""Three real worker processes share one metrics directory; the host's one endpoint adds them up exactly.

The test does what a fleet's supervisor does (``metrics_fleet.py``): prepares the directory, serves the endpoint,
starts the workers with its environment, and reports a worker that exited.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from arq.connections import ArqRedis, RedisSettings
from prometheus_client.mmap_dict import MmapedDict

from src.runner import Codec, JobClient
from src.runner import constants as k
from src.runner.metrics_config import MetricsConfig
from src.runner.metrics_fleet import start_fleet_metrics
from src.runner.redis_server import RedisServer
from tests.metrics_fleet_settings import give_up, pause
from tests.metrics_scrape import Samples, http_get, parse, total
from tests.spawn import Spawner
from tests.waiting import SLOW_FACTOR, wait_for

WORKERS = 3
PAUSES = 30
FAILURES = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _finished_by_pid(directory: Path) -> dict[int, float]:
    """Tries each process recorded as finished, read from its own counter file."""
    counts: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        counts[pid] = sum(v for key, v, *_ in values if '"hasten_jobs_finished_total"' in key)
    return counts


@pytest.mark.timeout(120)
async def test_one_endpoint_adds_up_three_worker_processes(
    redis_server: RedisServer, redis: ArqRedis, redis_settings: RedisSettings, tmp_path: Path, spawn: Spawner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"left by an earlier run")
    port = _free_port()
    config = MetricsConfig(port=port, multiprocess_dir=directory)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # start_fleet_metrics exports the directory
    fleet = start_fleet_metrics(config, redis_settings, k.default_queue_name)
    assert fleet is not None and fleet.port == port
    try:
        assert not (directory / "counter_999999.db").exists()  # wiped at start
        env = {**os.environ, "JOBS_REDIS_URL": redis_server.url, **fleet.child_env}
        procs = [
            spawn([sys.executable, "-m", "arq", "tests.metrics_fleet_settings.WorkerSettings"], name=f"w{i}", env=env)
            for i in range(WORKERS)
        ]

        async def registered() -> bool:
            return bool(await redis.zcard(k.WORKERS_KEY_PREFIX + k.default_queue_name) == WORKERS)

        await wait_for(registered, 30, message="three workers registered")
        assert (await http_get(port, "/readyz"))[0] == 200
        client = JobClient(redis, Codec())
        await client.enqueue_many([pause.call(0.1) for _ in range(PAUSES)] + [give_up.call() for _ in range(FAILURES)])

        async def added_up() -> Samples | None:
            status, body = await http_get(port, "/metrics")
            assert status == 200, body
            s = parse(body)
            finished = total(s, "hasten_jobs_finished_total")
            return s if finished == PAUSES + FAILURES and total(s, "hasten_jobs_running") == 0 else None

        s = await wait_for(added_up, 30, message="the endpoint's sums reaching the jobs run")
        assert total(s, "hasten_jobs_started_total") == PAUSES + FAILURES
        assert total(s, "hasten_jobs_finished_total", function="pause", outcome="complete") == PAUSES
        assert total(s, "hasten_jobs_finished_total", function="give_up", outcome="dead") == FAILURES
        assert total(s, "hasten_job_duration_seconds_count") == PAUSES + FAILURES
        assert total(s, "hasten_dead_letters") == FAILURES  # the queue gauges, read once, by the endpoint
        by_pid = _finished_by_pid(directory)
        assert sorted(by_pid) == sorted(p.pid for p in procs)
        assert all(n > 0 for n in by_pid.values()), by_pid  # each process ran some: the sums are over all three

        # a worker exits: its live gauges leave the sums, its counts stay
        procs[0].send_signal(signal.SIGTERM)
        await asyncio.to_thread(procs[0].wait, 20 * SLOW_FACTOR)
        assert (directory / f"gauge_livesum_{procs[0].pid}.db").exists()
        fleet.child_exited(procs[0].pid)
        assert not (directory / f"gauge_livesum_{procs[0].pid}.db").exists()
        after = parse((await http_get(port, "/metrics"))[1])
        assert total(after, "hasten_jobs_finished_total") == PAUSES + FAILURES
        assert total(after, "hasten_jobs_started_total") == PAUSES + FAILURES
    finally:
        fleet.close()
