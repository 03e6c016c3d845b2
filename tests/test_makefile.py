"""The Makefile's first-install checks: a venv made by a too-old Python is rebuilt, a too-old Python refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _python_310(path: Path) -> Path:
    """A stand-in for Python 3.10: says so to ``-V`` and fails the version check like the real one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#!/bin/sh\n[ "$1" = "-V" ] && { echo "Python 3.10.12"; exit 0; }\nexit 1\n')
    path.chmod(0o755)
    return path


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_venv_of_an_old_python_is_rebuilt(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _python_310(venv / "bin" / "python")
    done = _make("check-venv", f"VENV={venv}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"{venv} was made by Python 3.10.12; hasten needs Python >= 3.11: rebuilding it with python3"
    )
    assert not venv.exists()


def test_an_old_python_is_refused_with_what_to_do(tmp_path: Path) -> None:
    old = _python_310(tmp_path / "python3.10")
    done = _make("check-venv", f"VENV={tmp_path / 'none'}", f"PYTHON={old}")
    assert done.returncode != 0
    assert f"hasten needs Python >= 3.11, but {old} is Python 3.10.12: run make with PYTHON=python3.12" in done.stdout


def test_a_good_venv_is_kept(tmp_path: Path) -> None:
    done = _make("check-venv")  # this checkout's own .venv, which runs these tests
    assert done.returncode == 0 and done.stdout == "", done.stdout
