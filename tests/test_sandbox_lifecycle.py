"""Container lifecycle: retries, replacement, and cleanup after crashes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from evalsuite.sandbox import ExecJob, ExecStatus

from sandbox.container import labelled
from tests.sandbox_fixtures import docker_client, make_sandbox, run1

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
LABEL = "evalsuite.sandbox"


def _gone(client, ids, within_s: float = 20.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        left = [c for c in labelled(client) if c["id"] in ids]
        if not left:
            return True
        time.sleep(0.2)
    return False


def _kill_worker_containers(client, worker, times: int, after_s: float) -> threading.Thread:
    """Kill the worker's container ``times`` times, each ``after_s`` into a job."""

    def killer() -> None:
        killed: set[str] = set()
        deadline = time.monotonic() + 60
        while len(killed) < times and time.monotonic() < deadline:
            cid = worker.container
            if cid and cid not in killed:
                time.sleep(after_s)
                try:
                    client.api.kill(cid)
                except Exception:
                    pass
                killed.add(cid)
            time.sleep(0.02)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    return t


def test_executor_killed_mid_job_is_retried_on_a_fresh_container():
    client = docker_client()
    box = make_sandbox(workers=1, memory_mb=256)
    try:
        assert run1(box, "x = 1").status is ExecStatus.PASSED
        first = box._pool[0].container
        t = _kill_worker_containers(client, box._pool[0], times=1, after_s=0.5)
        r = run1(box, "import time\ntime.sleep(1.5)\nresult = 42", result_var="result")
        t.join()
        assert r.status is ExecStatus.PASSED and r.value == 42
        assert box._pool[0].container != first
    finally:
        box.close()


def test_executor_killed_every_time_gives_sandbox_error():
    client = docker_client()
    box = make_sandbox(workers=1, memory_mb=256, max_retries=2)
    try:
        assert run1(box, "x = 1").status is ExecStatus.PASSED
        t = _kill_worker_containers(client, box._pool[0], times=3, after_s=0.4)
        r = run1(box, "import time\ntime.sleep(2)")
        t.join()
        assert r.status is ExecStatus.SANDBOX_ERROR
        assert "gave up after 3 attempts" in r.detail
        # The sandbox recovers by itself.
        assert run1(box, "x = 1").status is ExecStatus.PASSED
    finally:
        box.close()


def test_timeout_is_retried_once_on_a_fresh_container():
    box = make_sandbox(workers=1, memory_mb=256, retry_timeouts=True)
    try:
        assert run1(box, "x = 1").status is ExecStatus.PASSED
        first = box._pool[0].container
        r = run1(box, "import time\ntime.sleep(10)", timeout_s=1)
        assert r.status is ExecStatus.TIMED_OUT
        assert "again on a retry in a fresh container" in r.detail
        assert run1(box, "x = 1").status is ExecStatus.PASSED
        assert box._pool[0].container != first  # replaced after the timeout
    finally:
        box.close()


def test_stale_containers_of_dead_owners_are_swept():
    client = docker_client()
    from sandbox.image import IMAGE_TAG

    stale = client.api.create_container(
        IMAGE_TAG, command=["true"],
        labels={LABEL: "1", f"{LABEL}.owner": f"{socket.gethostname()}:999999999:0"})["Id"]
    mine_alive = client.api.create_container(
        IMAGE_TAG, command=["true"],
        labels={LABEL: "1", f"{LABEL}.owner": f"{socket.gethostname()}:{os.getppid()}:?"})["Id"]
    try:
        box = make_sandbox(workers=1)
        box.close()
        ids = {c["id"] for c in labelled(client)}
        assert stale not in ids
    finally:
        for cid in (stale, mine_alive):
            try:
                client.api.remove_container(cid, force=True)
            except Exception:
                pass


CRASHER = textwrap.dedent("""
    import sys, time
    from evalsuite.sandbox import ExecJob
    from sandbox.docker_sandbox import DockerSandbox
    sb = DockerSandbox(workers=2)
    list(sb.run([ExecJob(str(i), "x = 1") for i in range(4)]))
    print(" ".join(w.container for w in sb._pool if w.container), flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_containers_removed_when_the_host_process_dies(sig):
    client = docker_client()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    # Ctrl-C restored, as a terminal has it: a runner that starts the tests in
    # the background passes SIGINT on ignored, and the crasher would sleep on.
    proc = subprocess.Popen([sys.executable, "-c", CRASHER], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        ids = set(line.split())
        assert len(ids) == 2, line
        proc.send_signal(sig)
        proc.wait(timeout=30)
        # SIGTERM: our handler removes them; SIGINT: KeyboardInterrupt, then
        # the atexit hook; SIGKILL: the engine closes the executor's stdin
        # (stdin_once), the executor exits and auto_remove deletes it.
        assert _gone(client, ids)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_long_run_reuses_one_container():
    """Hundreds of jobs on one executor: no descriptor or process leak forces
    a replacement (a leak of 2 fds per job once broke it after ~510 jobs)."""
    box = make_sandbox(workers=1)
    try:
        assert run1(box, "x = 1").status is ExecStatus.PASSED
        first = box._pool[0].container
        jobs = [ExecJob(str(i), f"print({i})\nassert {i} >= 0") for i in range(800)]
        results = list(box.run(jobs))
        assert len(results) == 800
        assert all(r.status is ExecStatus.PASSED for r in results)
        assert box._pool[0].container == first
        assert box._pool[0].jobs_run >= 801
    finally:
        box.close()


def test_damaging_jobs_inside_a_pipelined_stream():
    """Jobs queued behind a timeout/OOM on the same worker are re-sent to the
    fresh container and still get their own, correct verdicts."""
    box = make_sandbox(workers=1, memory_mb=256, retry_timeouts=False, pipeline_depth=3)
    try:
        jobs = [ExecJob("a", "result = 'a'", result_var="result"),
                ExecJob("loop", "while True:\n    pass", timeout_s=1),
                ExecJob("b", "result = 'b'", result_var="result"),
                ExecJob("bomb", "x = bytearray(1 << 30)"),
                ExecJob("c", "result = 'c'", result_var="result"),
                ExecJob("exit", "import os\nos._exit(0)"),
                ExecJob("d", "result = 'd'", result_var="result")]
        results = {r.id: r for r in box.run(jobs)}
        assert {k: r.status for k, r in results.items()} == {
            "a": ExecStatus.PASSED, "loop": ExecStatus.TIMED_OUT, "b": ExecStatus.PASSED,
            "bomb": ExecStatus.OOM, "c": ExecStatus.PASSED, "exit": ExecStatus.FAILED,
            "d": ExecStatus.PASSED}
        assert [results[k].value for k in "abcd"] == list("abcd")
    finally:
        box.close()


def test_consumer_stopping_early_abandons_running_jobs_quickly():
    box = make_sandbox(workers=2, retry_timeouts=False)
    try:
        jobs = [ExecJob("quick", "x = 1")] + [
            ExecJob(f"slow{i}", "import time\ntime.sleep(30)", timeout_s=60) for i in range(4)]
        gen = box.run(jobs)
        first = next(gen)
        gen.close()  # stop consuming while slow jobs are running
        assert first.id == "quick"
        # The running slow jobs were abandoned: their containers are gone.
        assert all(w.container is None for w in box._pool)
        assert run1(box, "x = 1").status is ExecStatus.PASSED  # usable afterwards
    finally:
        box.close()


def test_nothing_left_behind_and_next_job_runs():
    """Runs last in this module: a new job still runs normally, and afterwards
    no labelled container of ours survives and no host process remains in any
    container this process ever created."""
    client = docker_client()
    from sandbox.container import created_here, owner_id

    box = make_sandbox(workers=1)
    try:
        results = list(box.run([ExecJob("after", "assert 1 + 1 == 2")]))
        assert [r.status for r in results] == [ExecStatus.PASSED]
    finally:
        box.close()
    mine = [c for c in labelled(client) if c["labels"].get(f"{LABEL}.owner") == owner_id()]
    assert mine == []
    # Other programs' sandboxes may legitimately be running meanwhile, so look
    # only for processes inside containers created by this process.
    ours = created_here()
    assert ours
    strays = []
    for proc in Path("/proc").iterdir():
        try:
            cgroups = (proc / "cgroup").read_text()
        except OSError:
            continue
        if any(cid in cgroups for cid in ours):
            strays.append(proc.name)
    assert strays == []
