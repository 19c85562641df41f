"""Shared fixtures for the Docker sandbox tests (imported by tests/test_sandbox_*.py).

The tests need a running Docker engine and the sandbox image.  They are only
skipped when EVALSUITE_SKIP_DOCKER=1; otherwise a missing engine or image
fails loudly with the one-line fix.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from evalsuite.sandbox import ExecJob, ExecResult, SandboxUnavailable

SECRET_NAME = "EVALSUITE_SANDBOX_TEST_SECRET"
SECRET_VALUE = "s3cr3t-must-not-leak-7f3a"
from evalsuite.data import DataSource
from tests.conftest import DATA_DIR

def docker_client():  # -> docker.DockerClient
    if os.environ.get("EVALSUITE_SKIP_DOCKER") == "1":
        pytest.skip("EVALSUITE_SKIP_DOCKER=1")
    from sandbox import engine

    try:
        client = engine.connect()
        engine.require_image(client)
    except SandboxUnavailable as exc:
        pytest.fail(f"Docker sandbox unavailable (set EVALSUITE_SKIP_DOCKER=1 to skip): {exc}",
                    pytrace=False)
    return client


def make_sandbox(**kwargs):  # -> DockerSandbox
    docker_client()
    # Planted before any container exists: it must never show up inside.
    os.environ[SECRET_NAME] = SECRET_VALUE
    from sandbox.docker_sandbox import DockerSandbox

    return DockerSandbox(**kwargs)


@pytest.fixture(scope="module")
def sb() -> Iterator:
    """Two workers, small limits, timeouts not retried (keeps the suite fast)."""
    box = make_sandbox(workers=2, memory_mb=256, pids_limit=32, retry_timeouts=False)
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def sb1() -> Iterator:
    """One worker, so consecutive jobs share a container (leak tests)."""
    box = make_sandbox(workers=1, memory_mb=256, pids_limit=32, retry_timeouts=False)
    try:
        yield box
    finally:
        box.close()


def run1(box, source: str, timeout_s: float = 5.0, result_var: str | None = None,
         job_id: str = "job") -> ExecResult:
    results = list(box.run([ExecJob(job_id, source, timeout_s=timeout_s,
                                    result_var=result_var)]))
    assert len(results) == 1
    return results[0]


def humaneval_problems() -> list[dict]:
    return DataSource("humaneval", DATA_DIR, None).json_rows("HumanEval.jsonl.gz")


def humaneval_program(p: dict) -> str:
    return p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + "\n" + f"check({p['entry_point']})"
