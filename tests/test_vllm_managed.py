"""``--model vllm:...``: evalsuite starts, uses and always stops its own vLLM server.

Each test starts a real server through the CLI, as a user would, and reads
the server's pid from the "starting vLLM server (pid N)" line; the server
runs in its own session N, so "nothing left" means no process of session N.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evalsuite.backends.base import BackendOptions
from evalsuite.backends.watchdog import session_members
from evalsuite.task import TaskContext
from tests.conftest import DATA_DIR, REPO, evalsuite
from tests.vllm_fixtures import wait_gone

pytestmark = pytest.mark.model
SUBTASKS = "navigate,web_of_lies"
STARTING = re.compile(r"starting vLLM server \(pid (\d+)\)")


def start(*args: str) -> subprocess.Popen:
    # Its own session, so a test can signal it (and its watchdog) like a terminal would;
    # Ctrl-C restored, as a terminal has it (a CI runner may start us with SIGINT ignored).
    return subprocess.Popen([sys.executable, "-m", "evalsuite.cli", "run", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def server_pid(proc: subprocess.Popen) -> tuple[int, list[str]]:
    """The managed server's pid, and evalsuite's stderr lines (drained from now on,
    so a full pipe never blocks it)."""
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        if m := STARTING.search(line):
            threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
            return int(m.group(1)), lines
    proc.wait()
    pytest.fail(f"evalsuite exited ({proc.returncode}) before starting a server: {''.join(lines)}")


def test_kill_9_mid_run_leaves_no_server_and_resume_completes(tmp_path):
    proc = start("--model", "vllm:smollm2-135m", "--tasks", "bbh", "-T", "variant=fewshot", "-T", f"subtasks={SUBTASKS}",
                 "--limit", "4", "-M", "concurrency=1", "-o", str(tmp_path))
    pid, _ = server_pid(proc)
    samples = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(tmp_path.glob("*/samples.jsonl"))
        if found and found[0].read_text().count("\n") >= 1:
            samples = found[0]
            break
        time.sleep(0.2)
    assert samples is not None, "no sample was written"
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: only the watchdog can clean up
    proc.wait()
    gone_after = wait_gone(pid, within=30)
    print(f"server session gone {gone_after:.1f} s after kill -9")
    assert samples.read_text().count("\n") < 8, "the run had finished before the kill"

    res = evalsuite("run", "--resume", str(samples.parent))
    assert res.returncode == 0, res.stderr
    pid2 = int(STARTING.search(res.stderr).group(1))
    assert not session_members(pid2)
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len({r["sample_id"] for r in rows}) == 8 and all(r["score"]["status"] == "scored" for r in rows[-8:])

    prov = json.loads((samples.parent / "run.json").read_text())["model"]
    assert prov["backend"] == "vllm" and prov["dtype"] == "float32" and len(prov["file_hash"]) == 64
    command = prov["server"]["command"]
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"] and "--enforce-eager" in command
    assert prov["server"]["version"] and prov["server"]["models_entry"]["max_model_len"] == 8192

    # Greedy completions equal the HF backend's on the same prompts.
    from evalsuite.backends.hf import HFBackend
    from tasks.bbh import bbh

    task = bbh(TaskContext(data_dir=DATA_DIR, chat=True), variant="fewshot", subtasks=SUBTASKS.split(","))
    by_id = {s.id: s for s in task.samples}
    latest = {r["sample_id"]: r for r in rows}
    hf = HFBackend("smollm2-135m", BackendOptions())
    reqs = [task.request(by_id[sid]) for sid in sorted(latest)]
    theirs = dict(hf.generate(reqs))
    for i, sid in enumerate(sorted(latest)):
        assert latest[sid]["output"]["completions"] == theirs[i].completions, sid


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_while_starting_stops_the_server(sig, tmp_path):
    proc = start("--model", "vllm:smollm2-135m", "--tasks", "bbh", "--limit", "1", "-o", str(tmp_path))
    pid, lines = server_pid(proc)
    time.sleep(3)
    assert session_members(pid), "the server was not running"
    os.killpg(proc.pid, sig)  # a terminal's Ctrl-C reaches the whole foreground group
    proc.wait(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + signal.SIGTERM), "".join(lines)
    wait_gone(pid, within=15)


def test_a_server_that_cannot_start_fails_with_its_log_tail(tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')
    proc = start("--model", f"vllm:{folder}", "--tasks", "bbh", "--limit", "1", "-o", str(tmp_path / "runs"))
    pid, lines = server_pid(proc)
    proc.wait(timeout=600)
    time.sleep(0.5)  # the drain thread reads the last lines
    assert proc.returncode == 2, "".join(lines)
    # Progress lines ("loading model …") may come first; then one error line and the log's tail.
    shown = [line.rstrip("\n") for line in lines if not STARTING.search(line)]
    errors = [i for i, line in enumerate(shown) if line.startswith("error:")]
    assert len(errors) == 1, shown
    first, *tail = shown[errors[0]:]
    assert all(line.startswith("loading model") for line in shown[: errors[0]]), shown
    assert re.fullmatch(r"error: the vLLM server exited \(status \d+\) while starting; the end of .*\.log:", first)
    assert "no-such-architecture" in "\n".join(tail)
    assert not session_members(pid)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_missing_vllm_interpreter_is_one_clear_line(tmp_path):
    res = evalsuite("run", "--model", "vllm:smollm2-135m", "-M", "vllm_python=/nonexistent/python", "--tasks", "bbh",
                    "--limit", "1", "-o", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["error: no vLLM interpreter at /nonexistent/python: build it with "
                                              "`make vllm-venv`, or point -M vllm_python (or $EVALSUITE_VLLM_PYTHON) "
                                              "at a Python that has vLLM installed"]


def test_managed_server_options_reach_the_command_line():
    from evalsuite.backends.models import resolve_model
    from evalsuite.backends.vllm_server import plan_servers

    device, servers = plan_servers(resolve_model("smollm2-135m"), BackendOptions(device="cuda", dtype="bf16"), {
        "tensor_parallel_size": "2", "data_parallel": "2", "max_model_len": "4096", "gpu_memory_utilization": "0.8",
        "enforce_eager": "false", "vllm_args": "--max-num-seqs 64",
    })
    assert device == "cuda" and len(servers) == 2 and servers[0].port != servers[1].port
    args = servers[0].command
    for flag, value in (("--dtype", "bfloat16"), ("--tensor-parallel-size", "2"), ("--max-model-len", "4096"),
                        ("--gpu-memory-utilization", "0.8"), ("--max-num-seqs", "64"), ("--host", "127.0.0.1")):
        assert args[args.index(flag) + 1] == value
    assert "--enforce-eager" not in args
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in servers] == ["0,1", "2,3"]
    _, servers = plan_servers(resolve_model("smollm2-135m"), BackendOptions(device="cuda:1"), {"data_parallel": "2"})
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in servers] == ["1", "2"]  # --device cuda:N is honoured, not GPU 0
    _, (cpu,) = plan_servers(resolve_model("smollm2-135m"), BackendOptions(device="cpu"), {"kv_cache_space": "3"})
    assert cpu.env["VLLM_CPU_KVCACHE_SPACE"] == "3" and "--enforce-eager" in cpu.command
    assert cpu.command[cpu.command.index("--dtype") + 1] == "float32"  # the HF backend's CPU dtype, not vLLM's bf16
    assert Path(cpu.python).is_file()


@pytest.mark.parametrize("option, message", [("enforce_eager", "-M expects KEY=VALUE, got 'enforce_eager'"),
                                             ("enforce_eagr=false", "unknown -M option 'enforce_eagr'; did you mean enforce_eager?")])
def test_make_vllm_serve_names_a_bad_option_in_one_line(option, message, tmp_path):
    res = subprocess.run([sys.executable, "-m", "evalsuite.backends.vllm_server", "-M", option], capture_output=True, text=True,
                         env={**os.environ, "EVALSUITE_VLLM_PYTHON": str(tmp_path / "no-python")}, timeout=120)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [f"error: {message}"], res.stderr
