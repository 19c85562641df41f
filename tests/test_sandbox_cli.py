"""`evalsuite sandbox` commands: check proves isolation; errors are one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.sandbox_fixtures import docker_client

from sandbox.cli import sandbox

pytestmark = pytest.mark.docker


def test_check_passes_on_a_healthy_sandbox():
    docker_client()
    result = CliRunner().invoke(sandbox, ["check"])
    assert result.exit_code == 0, result.output
    for probe in ("network disabled", "non-root user", "read-only root filesystem",
                  "memory limit enforced", "pids limit enforced", "minimal environment"):
        assert f"ok    {probe}" in result.output
    assert "FAIL" not in result.output


def test_missing_image_is_one_line_with_the_fix():
    docker_client()
    result = CliRunner().invoke(sandbox, ["check", "--tag", "evalsuite-sandbox:does-not-exist"])
    assert result.exit_code != 0
    err = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert err == ["error: sandbox image evalsuite-sandbox:does-not-exist missing: "
                   "run `evalsuite sandbox build` (or `python -m sandbox.cli build`)"]
    assert "Traceback" not in result.output


def test_unreachable_engine_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = CliRunner().invoke(sandbox, ["check"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("error: Docker engine not reachable at unix:///nonexistent/docker.sock")
    assert "setup_engine.sh" in lines[0]


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:9", "ssh://nobody@127.0.0.1:9"])
def test_an_unreachable_remote_engine_names_the_host_not_the_local_setup(url):
    # "run `sudo sandbox/setup_engine.sh` (installs docker.io ...)" cannot fix an engine on another machine.
    result = CliRunner().invoke(sandbox, ["check", "--host", url])
    assert result.exit_code != 0 and "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: Docker engine not reachable at {url}: check that the host is up and "
                           f"its engine answers there (`docker -H {url} info`)")
    assert "setup_engine.sh" not in line


def test_library_raises_sandbox_unavailable(monkeypatch):
    from evalsuite.sandbox import SandboxUnavailable
    from sandbox.docker_sandbox import DockerSandbox

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxUnavailable, match="setup_engine.sh"):
        DockerSandbox()
    monkeypatch.delenv("DOCKER_HOST")
    docker_client()
    with pytest.raises(SandboxUnavailable, match="evalsuite sandbox build"):
        DockerSandbox(image="evalsuite-sandbox:does-not-exist")
