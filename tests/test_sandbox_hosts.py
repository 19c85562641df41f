"""The sandbox on a fleet of Docker engines: a second real engine on this machine.

HumanEval is scored over the main engine and a private second one; the second
crashes mid-run (dockerd, containerd and its containers SIGKILLed at once, as
in a power cut).  Its jobs finish on the first, the verdicts equal a
single-engine run, and neither engine keeps a container.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR, REPO, evalsuite
from tests.sandbox_fixtures import docker_client
from tests.second_engine import SecondEngine

pytestmark = pytest.mark.docker

MAIN = "unix:///var/run/docker.sock"
LABEL, OWNER_LABEL = "evalsuite.sandbox", "evalsuite.sandbox.owner"


@pytest.fixture(scope="module")
def engine2():
    docker_client()  # the main engine and its image, or one clear failure
    second = SecondEngine()
    try:
        second.start()
        # The image reaches the new engine the way a user would send it.
        built = evalsuite("sandbox", "build", "--if-missing", "--host", MAIN, "--host", second.url, timeout=600)
        assert built.returncode == 0, built.stderr
        assert f"loaded evalsuite-sandbox:0.1 on {second.url}" in built.stdout
        yield second
    finally:
        second.remove()


def _ours(client, pid: int) -> list[str]:
    """Sandbox containers owned by process ``pid`` of this machine, running or not."""
    prefix = f"{socket.gethostname()}:{pid}:"
    return [c["Id"] for c in client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
            if (c.get("Labels") or {}).get(OWNER_LABEL, "").startswith(prefix)]


def _samples(path: Path) -> Path:
    """Every HumanEval problem: a third wrong, the rest canonical; each program
    sleeps 0.3 s at module level so the run lasts long enough to cut it."""
    rows = [json.loads(line) for line in gzip.open(DATA_DIR / "humaneval" / "HumanEval.jsonl.gz", "rt")]
    with path.open("w") as f:
        for i, row in enumerate(rows):
            body = row["canonical_solution"] if i % 3 else "    return None\n"
            f.write(json.dumps({"task_id": row["task_id"], "completion": body + "\nimport time\ntime.sleep(0.3)\n"}) + "\n")
    return path


def _verdicts(path: Path) -> dict[str, tuple]:
    return {r["task_id"]: (r["passed"], r["result"]) for r in map(json.loads, path.read_text().splitlines())}


def test_check_probes_isolation_on_every_host(engine2):
    proc = evalsuite("sandbox", "check", "--host", MAIN, "--host", engine2.url, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for url in (MAIN, engine2.url):
        for probe in ("network disabled", "non-root user", "read-only root filesystem",
                      "memory limit enforced", "pids limit enforced", "minimal environment"):
            assert f"ok    {probe} on {url}" in proc.stdout
    assert "FAIL" not in proc.stdout
    assert "sandbox isolation verified on 2 hosts" in proc.stdout


def test_a_host_without_the_image_fails_the_check_with_the_fix(engine2):
    proc = evalsuite("sandbox", "check", "--tag", "evalsuite-sandbox:absent", "--host", MAIN, "--host", engine2.url)
    assert proc.returncode != 0
    assert (f"FAIL  {engine2.url}: sandbox image evalsuite-sandbox:absent missing on {engine2.url}: "
            f"run `evalsuite sandbox build --host {engine2.url}`") in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_hosts_holding_different_images_under_one_tag_are_refused(engine2):
    """The tag was built separately on each host (another Dockerfile, an older
    evalsuite): a job's verdict would depend on the host it landed on.  The
    check flagged it, but a run scored on both."""
    from evalsuite.sandbox import SandboxUnavailable
    from sandbox.docker_sandbox import DockerSandbox
    from sandbox.image import IMAGE_TAG

    main, second = docker_client(), engine2.client()
    repo, tag = "evalsuite-sandbox", "hosts-test-mixed"
    main.images.get(IMAGE_TAG).tag(repo, tag)
    other = second.containers.create(IMAGE_TAG, command=["true"])
    try:
        other.commit(repository=repo, tag=tag, changes=["LABEL evalsuite.test=another-build"])
        with pytest.raises(SandboxUnavailable) as refused:
            DockerSandbox(hosts=f"{MAIN}#workers=1,{engine2.url}#workers=1", image=f"{repo}:{tag}")
        assert str(refused.value).startswith(f"the sandbox hosts hold different images tagged {repo}:{tag} ({MAIN}: sha256:")
        assert f"copy one with `evalsuite sandbox build --host {MAIN} --host {engine2.url}`" in str(refused.value)
    finally:
        other.remove(force=True)
        for client in (main, second):
            client.images.remove(f"{repo}:{tag}", noprune=True)


def test_an_unreachable_host_is_left_out_with_a_warning(caplog):
    docker_client()
    from evalsuite.sandbox import ExecJob, ExecStatus
    from sandbox.docker_sandbox import DockerSandbox

    with DockerSandbox(hosts=f"{MAIN}#workers=1,unix:///nonexistent/docker.sock#workers=3") as box:
        assert [h.name for h in box.hosts] == [MAIN] and box.workers == 1
        (result,) = box.run([ExecJob("j", "x = 1")])
        assert result.status is ExecStatus.PASSED
    assert "sandbox host unix:///nonexistent/docker.sock left out" in caplog.text


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ("http://example", "expected unix://, ssh:// or tcp://"),
        (f"{MAIN}#workers=0", "workers must be a positive integer"),
        (f"{MAIN}#cpus=2", "unknown option(s) cpus"),
        ("tcp://127.0.0.1:2376#tls=/nonexistent", "/nonexistent lacks ca.pem, cert.pem, key.pem"),
        (f"{MAIN}#tls=/tmp", "tls= applies to tcp:// endpoints only"),
        (f"{MAIN},{MAIN}", "a sandbox host is listed twice"),
        # Typos: one line naming the entry and what is wrong with it, before any
        # work (they read "Docker engine not reachable ... run setup_engine.sh"
        # once the run had generated everything, or a ValueError traceback).
        ("tcp://[::1:2375", "sandbox host 'tcp://[::1:2375': not a Docker endpoint (Invalid IPv6 URL)"),
        ("tcp://127.0.0.1:2376x", "Port could not be cast to integer value as '2376x'"),
        ("tcp://10.0.0.7:70000", "Port out of range"),
        ("tcp://10.0.0.7", "port is required"),
        ("tcp:/10.0.0.7:2376", "not a Docker endpoint (Invalid bind address format"),
        ("ssh:/ci@build-7", "ssh:// needs a host (ssh://USER@HOST)"),
        ("ssh://ci@build-7/srv", "no path allowed for this protocol"),
        ("ssh://", "sandbox host 'ssh://': ssh:// needs a host (ssh://USER@HOST)"),
        (f"{MAIN},{MAIN}/", "a sandbox host is listed twice"),
        ("ssh://ci@build-7,ssh://ci@build-7:22", "a sandbox host is listed twice"),
    ],
)
def test_bad_host_lists_are_one_error_line_before_any_work(hosts, message, tmp_path):
    proc = evalsuite("run", "--model", "mock", "--tasks", "humaneval", "--limit", "1", "-o", str(tmp_path),
                     "--sandbox-hosts", hosts)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: sandbox host") or "listed twice" in proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir()), "nothing may run before the host list is accepted"


def test_humaneval_over_two_engines_with_one_crashing_mid_run(engine2, tmp_path):
    main = docker_client()
    samples = _samples(tmp_path / "samples.jsonl")
    base = evalsuite("score", "humaneval", "--samples", str(samples), "--data-dir", str(DATA_DIR),
                     "--output", str(tmp_path / "one.jsonl"),
                     "--sandbox-hosts", f"{MAIN}#workers=2", timeout=600)
    assert base.returncode == 0, base.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "evalsuite.cli", "score", "humaneval", "--samples", str(samples),
         "--data-dir", str(DATA_DIR), "--output", str(tmp_path / "two.jsonl"), "--sandbox-hosts", f"{MAIN}#workers=2,{engine2.url}#workers=2"],
        cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    second = engine2.client()
    deadline = time.monotonic() + 120
    while len(_ours(second, proc.pid)) < 2:  # both of its workers hold jobs
        assert proc.poll() is None and time.monotonic() < deadline, "the run never used the second engine"
        time.sleep(0.05)
    time.sleep(1.0)
    engine2.crash()  # dockerd, containerd, shims and containers SIGKILLed at once
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert f"sandbox host {engine2.url} stopped answering" in err

    # Same verdict for every problem, none lost to the engine that went away.
    assert _verdicts(tmp_path / "two.jsonl") == _verdicts(tmp_path / "one.jsonl")
    assert sum(passed for passed, _ in _verdicts(tmp_path / "two.jsonl").values()) == 109
    assert "sandbox_error" not in (tmp_path / "two.jsonl").read_text()

    # No container is left on either engine (the crashed one is started again to look).
    assert _ours(main, proc.pid) == []
    engine2.start()
    assert _ours(engine2.client(), proc.pid) == []


def test_a_host_that_answers_but_cannot_start_containers_is_drained(engine2, caplog):
    """Its engine still answers, but no container starts there any more (the
    image deleted under the run, a full disk): each job that needed a fresh
    container there failed its attempts and ended as sandbox_error although
    the other host was healthy.  Now the host is drained and they run there."""
    from evalsuite.sandbox import ExecJob, ExecStatus
    from sandbox.docker_sandbox import DockerSandbox
    from sandbox.image import IMAGE_TAG

    # Every fourth job times out, so its container is replaced by a fresh one.
    jobs = [ExecJob(f"j{i}", "while True:\n    pass" if i % 4 == 0 else "r = 1", timeout_s=1, result_var="r")
            for i in range(40)]
    results = []
    try:
        with DockerSandbox(hosts=f"{MAIN}#workers=2,{engine2.url}#workers=2", retry_timeouts=False) as box:
            for result in box.run(jobs):
                results.append(result)
                if len(results) == 2:
                    engine2.client().images.remove(IMAGE_TAG, force=True)  # running containers keep it
    finally:
        restored = evalsuite("sandbox", "build", "--if-missing", "--host", MAIN, "--host", engine2.url, timeout=600)
        assert restored.returncode == 0, restored.stderr
    assert sorted(r.id for r in results) == sorted(j.id for j in jobs)
    statuses = {r.id: r.status for r in results}
    assert {statuses[f"j{i}"] for i in range(0, 40, 4)} == {ExecStatus.TIMED_OUT}
    assert all(statuses[j.id] is ExecStatus.PASSED for j in jobs if j.id not in {f"j{i}" for i in range(0, 40, 4)}), \
        {k: v for k, v in statuses.items() if v is ExecStatus.SANDBOX_ERROR}
    assert f"sandbox host {engine2.url} cannot start containers" in caplog.text
    assert _ours(engine2.client(), os.getpid()) == [] and _ours(docker_client(), os.getpid()) == []


def test_when_every_host_is_gone_the_rest_end_as_sandbox_error(engine2):
    """One host, lost mid-run: finished jobs keep their verdicts, the rest
    come back once each as sandbox_error (retried by `evalsuite score`), and
    nothing waits forever."""
    from evalsuite.sandbox import ExecJob, ExecStatus
    from sandbox.docker_sandbox import DockerSandbox

    jobs = [ExecJob(f"j{i}", "import time\ntime.sleep(0.3)\nr = 1", result_var="r") for i in range(40)]
    results = []
    with DockerSandbox(hosts=f"{engine2.url}#workers=2") as box:
        for result in box.run(jobs):
            results.append(result)
            if len(results) == 4:
                engine2.crash()
    engine2.start()
    assert sorted(r.id for r in results) == sorted(j.id for j in jobs)
    assert {r.status for r in results} == {ExecStatus.PASSED, ExecStatus.SANDBOX_ERROR}
    assert all(r.value == 1 for r in results if r.status is ExecStatus.PASSED)
    lost = [r for r in results if r.status is ExecStatus.SANDBOX_ERROR]
    assert all(f"no Docker host left ({engine2.url}: stopped answering" in r.detail for r in lost)
    assert _ours(engine2.client(), os.getpid()) == []
