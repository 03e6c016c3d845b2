"""The deployment files in deploy/: the systemd unit verified by systemd itself where installed, the Dockerfile and the
compose file parsed and checked for what they promise, and the image's health check run against the test Redis."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from src.runner import constants as k
from src.runner.redis_server import RedisServer
from tests.spawn import Spawner
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
HASTEN = Path(sys.executable).parent / "hasten"
#: the longest a worker's drain takes: the grace period, then its closing writes (each bounded while Redis is away)
LONGEST_DRAIN_S = k.DEFAULT_SHUTDOWN_GRACE_S + 4 * k.SHUTDOWN_WRITE_BOUND_S


# systemd -----------------------------------------------------------------------------------------------------------
def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections and their settings (a setting may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_systemd_unit_stops_gracefully_and_restarts_on_failure() -> None:
    service = _unit(DEPLOY / "hasten-worker@.service")["Service"]
    assert service["KillMode"] == ["mixed"]  # SIGTERM to the supervisor only; it forwards to its workers
    assert float(service["TimeoutStopSec"][0]) > LONGEST_DRAIN_S
    assert service["Restart"] == ["on-failure"]
    assert 1 <= float(service["RestartSec"][0]) <= 30
    assert service["ExecStart"][0].endswith("/hasten worker")
    assert "%i" in service["EnvironmentFile"][0]  # each instance has its own settings
    assert service["User"][0] not in ("root", "0")


def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    # an instance of the template, pointing at this clone instead of /opt/hasten (systemd checks that ExecStart exists)
    text = (DEPLOY / "hasten-worker@.service").read_text()
    text = text.replace("/opt/hasten/.venv/bin/hasten", str(HASTEN)).replace("/opt/hasten", str(ROOT))
    unit = tmp_path / "hasten-worker@test.service"
    unit.write_text(text)
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # systemd reports a bad setting as a warning naming the file, and still exits 0
    about_the_unit = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and about_the_unit == [], done.stdout + done.stderr


def test_a_broken_unit_is_noticed(tmp_path: Path) -> None:
    """The check above can fail: systemd names a bad setting."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    text = (DEPLOY / "hasten-worker@.service").read_text().replace("KillMode=mixed", "KillMode=gently")
    unit = tmp_path / "hasten-worker@test.service"
    unit.write_text(text.replace("/opt/hasten/.venv/bin/hasten", str(HASTEN)).replace("/opt/hasten", str(ROOT)))
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert "kill mode" in (done.stdout + done.stderr).lower()


# Dockerfile --------------------------------------------------------------------------------------------------------
def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments left out."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.strip().partition(" ") for line in joined.splitlines() if line.strip())
    ]


def test_the_dockerfile_runs_the_worker_as_a_user_with_a_health_check() -> None:
    steps = _instructions(DEPLOY / "Dockerfile")
    names = [name for name, _ in steps]
    base = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", steps[0][1])
    assert names[0] == "FROM" and base is not None and int(base[1]) >= 11, steps[0]
    user_at = max(i for i, name in enumerate(names) if name == "USER")
    assert steps[user_at][1].split(":")[0] not in ("root", "0")
    assert "RUN" not in names[user_at:]  # nothing after the switch runs as root
    assert "ADD" not in names  # COPY only: no remote downloads or archives unpacked into the image
    for name, args in steps:
        if name == "COPY":
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source
    assert json.loads(dict(steps)["CMD"]) == ["hasten", "worker"]
    assert dict(steps)["STOPSIGNAL"] == "SIGTERM"
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".env", ".git", ".state"} <= set(ignored)  # no local venv, secrets or data in the image


def _health_check() -> list[str]:
    """The Dockerfile's HEALTHCHECK command, with this environment's ``hasten``."""
    args = dict(_instructions(DEPLOY / "Dockerfile"))["HEALTHCHECK"]
    command: list[str] = json.loads(args[args.index("CMD") + 3 :])
    assert command[0] == "hasten"
    return [str(HASTEN), *command[1:]]


async def test_the_images_health_check_works_with_a_worker(
    redis_server: RedisServer, redis: object, spawn: Spawner
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **{key: v for key, v in os.environ.items() if not key.startswith("JOBS_")},
        "JOBS_REDIS_URL": redis_server.url,
        "JOBS_METRICS_PORT": str(port),  # as the image sets it
    }
    check = _health_check()

    def healthy() -> bool:
        return subprocess.run(check, cwd=ROOT, env=env, capture_output=True, timeout=60).returncode == 0

    assert not healthy()  # no worker yet
    worker = spawn([str(HASTEN), "worker"], name="worker", env=env)
    await wait_for(healthy, 60, interval_s=0.5, message="the health check passing")
    worker.kill()
    await asyncio.to_thread(worker.wait)
    assert not healthy()


# compose -----------------------------------------------------------------------------------------------------------
def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match is not None, duration
    return float(match[1])


def test_the_compose_file_has_redis_with_aof_a_worker_the_api_and_prometheus() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "worker", "api", "prometheus"}
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])  # the AOF outlives the container
    for name in ("worker", "api"):
        service = services[name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["environment"]["JOBS_REDIS_URL"].startswith("redis://redis:")
        assert (
            DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]
        ).resolve() == DEPLOY / "Dockerfile"
    worker = services["worker"]
    assert worker["command"] == ["hasten", "worker"]
    assert _seconds(worker["stop_grace_period"]) > LONGEST_DRAIN_S  # Docker's default 10 s would cut the drain
    api = services["api"]
    module, _, attribute = api["command"][api["command"].index("uvicorn") + 1].partition(":")
    assert (ROOT / (module.replace(".", "/") + ".py")).exists() and attribute == "app"
    assert "healthcheck" in api  # the image's check is the workers'
    prometheus = services["prometheus"]
    mounted = {volume.split(":")[1]: DEPLOY / volume.split(":")[0] for volume in prometheus["volumes"]}
    config_dir = mounted["/etc/prometheus"]
    config = yaml.safe_load((config_dir / "prometheus.yml").read_text())
    assert [(config_dir / f).exists() for f in config["rule_files"]] == [True]
    [target] = config["scrape_configs"][0]["static_configs"][0]["targets"]
    host, _, port = target.partition(":")
    image_env = dict(_instructions(DEPLOY / "Dockerfile"))["ENV"]
    assert host == "worker" and f"JOBS_METRICS_PORT={port}" in image_env and "JOBS_METRICS_HOST=0.0.0.0" in image_env
