"""Shared test fixtures: the real benchmark data and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.vllm_fixtures import vllm_server  # noqa: F401 - one vLLM server per session, for every module

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("EVALSUITE_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "bbh").is_dir():
        pytest.fail(f"benchmark data not found at {DATA_DIR}; set EVALSUITE_DATA_DIR")
    return DATA_DIR


def _command(args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "evalsuite.cli", *args]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", **(extra or {})}


def evalsuite(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the installed CLI in a subprocess, as a user would."""
    return subprocess.run(_command(args), capture_output=True, text=True, env=_env(env), timeout=timeout, cwd=REPO)


def start_evalsuite(*args: str) -> subprocess.Popen:
    """Start the CLI without waiting, so several runs go concurrently."""
    return subprocess.Popen(_command(args), cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())


def finish_runs(procs: dict[str, tuple[Path, subprocess.Popen]]) -> dict[str, Path]:
    """Wait for `evalsuite run` processes; name -> the one run directory each wrote."""
    dirs = {}
    for name, (folder, proc) in procs.items():
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        (dirs[name],) = folder.iterdir()
    return dirs


@pytest.fixture
def cli():
    return evalsuite
