"""One real vLLM server on the embedded model for the whole test session.

Started through evalsuite's own managed-server code (vLLM's venv from
``make vllm-venv``; a missing venv fails with the fix, never skips), on CPU
in float32, so its greedy completions and log-probabilities can be compared
with the HF backend's.  Registered in conftest.py, so every module shares it.
The server must serve the embedded model under its id
(``make vllm-serve`` does), whether started here or reused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from evalsuite.backends.base import BackendOptions
from evalsuite.backends.models import DEFAULT_MODEL, resolve_model
from evalsuite.backends.watchdog import session_members
from evalsuite.errors import UserError


@dataclass(frozen=True)
class Served:
    base_url: str  # http://127.0.0.1:PORT/v1
    root: str  # http://127.0.0.1:PORT
    model: str  # the served model name


REUSE_ENV = "EVALSUITE_TEST_VLLM_URL"  # a running server on the embedded model (while developing), e.g. http://127.0.0.1:8000


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[Served]:
    from evalsuite.backends.vllm_server import plan_servers, start_servers

    if os.environ.get(REUSE_ENV):
        root = os.environ[REUSE_ENV].rstrip("/")
        yield Served(root + "/v1", root, httpx.get(root + "/v1/models", timeout=10).json()["data"][0]["id"])
        return
    try:
        resolved = resolve_model(DEFAULT_MODEL)
        _, (server,) = plan_servers(resolved, BackendOptions(device="cpu"), {})
        start_servers([server], timeout=900)
    except UserError as exc:
        pytest.fail(f"cannot start the vLLM test server: {exc}")
    try:
        yield Served(server.base_url, server.base_url.removesuffix("/v1"), resolved.id)
    finally:
        pid = server.pid
        server.stop()
        assert pid is not None and not session_members(pid), "the vLLM test server outlived its stop()"


def wait_gone(sid: int, within: float) -> float:
    """Seconds until no process of session ``sid`` is left; fails after ``within``."""
    start = time.monotonic()
    while session_members(sid):
        if time.monotonic() - start > within:
            pytest.fail(f"processes of session {sid} still alive after {within} s: {session_members(sid)}")
        time.sleep(0.2)
    return time.monotonic() - start
