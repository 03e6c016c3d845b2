"""The deployment files in deploy/: the systemd unit verified by systemd itself where installed, the Dockerfile and the
compose file parsed and checked for what they promise, and the image's health check run against the test Redis."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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
    """The Dockerfile's HEALTHCHECK command, with this interpreter for its ``python``."""
    args = dict(_instructions(DEPLOY / "Dockerfile"))["HEALTHCHECK"]
    command: list[str] = json.loads(args[args.index("CMD") + 3 :])
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


async def test_the_images_health_check_works_with_a_worker(
    redis_server: RedisServer, redis: object, spawn: Spawner
) -> None:
    env = {
        **{key: v for key, v in os.environ.items() if not key.startswith("JOBS_")},
        "JOBS_REDIS_URL": redis_server.url,
    }
    check = _health_check()

    def healthy() -> bool:
        return subprocess.run(check, cwd=ROOT, env=env, capture_output=True, timeout=60).returncode == 0

    assert not healthy()  # no worker yet
    spawn([str(HASTEN), "worker"], name="worker", env=env)
    await wait_for(healthy, 60, interval_s=0.5, message="the health check passing")


# compose -----------------------------------------------------------------------------------------------------------
def parse_yaml(text: str) -> Any:
    """The YAML this project's compose file uses (block mappings and lists, JSON-style flow lists and quoted strings,
    plain scalars, whole-line comments), so the file is checked without a YAML library in the test environment."""
    lines = [(len(raw) - len(raw.lstrip()), raw.strip()) for raw in text.splitlines()]
    lines = [(indent, line) for indent, line in lines if line and not line.startswith("#")]
    value, end = _block(lines, 0, lines[0][0])
    assert end == len(lines), f"unparsed from line {lines[end]}"
    return value


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("- "):
        items = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
            items.append(_scalar(lines[i][1][2:]))
            i += 1
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent:
        match = re.fullmatch(r"([\w.-]+):(?:\s+(.+))?", lines[i][1])
        assert match is not None, f"not a 'key: value' line: {lines[i][1]!r}"
        i += 1
        if match[2] is not None:
            mapping[match[1]] = _scalar(match[2])
        elif i < len(lines) and lines[i][0] > indent:
            mapping[match[1]], i = _block(lines, i, lines[i][0])
        else:
            mapping[match[1]] = None
    return mapping, i


def _scalar(text: str) -> Any:
    if text.startswith(("[", '"')) or text in ("true", "false"):
        return json.loads(text)
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match is not None, duration
    return float(match[1])


def test_the_compose_file_has_redis_with_aof_a_worker_and_the_api() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    compose = parse_yaml(text)
    services = compose["services"]
    assert set(services) == {"redis", "worker", "api"}
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


def test_the_compose_parser_agrees_with_pyyaml() -> None:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is not installed: the compose file is checked by the parser above"
    )
    text = (DEPLOY / "compose.yaml").read_text()
    assert parse_yaml(text) == yaml.safe_load(text)
