"""Ray data parallelism: replicas equal one process, lose nothing, and leave no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evalsuite.rundir import RunDir
from tests.conftest import REPO, evalsuite
from tests.test_resume import REPLIES, SUBTASKS  # the same mock run as the resume tests


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> set[tuple[int, str]]:
    found, stack = set(), [pid]
    while stack:
        p = stack.pop()
        for task in Path(f"/proc/{p}/task").glob("*") if Path(f"/proc/{p}").exists() else []:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            for k in kids:
                start = _start_time(k)
                if start is not None:
                    found.add((k, start))
                    stack.append(k)
    return found


class ProcessTree:
    """Every process that descends from ``pid`` while it runs (Ray's included)."""

    def __init__(self, pid: int) -> None:
        self.seen: set[tuple[int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(pid,), daemon=True)
        self._thread.start()

    def _watch(self, pid: int) -> None:
        while not self._stop.is_set() and Path(f"/proc/{pid}").exists():
            self.seen |= _descendants(pid)
            time.sleep(0.1)

    def survivors(self, within_s: float = 20.0) -> list[str]:
        """Processes still alive after ``within_s`` (same pid *and* start time)."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + within_s
        while True:
            alive = [(p, s) for p, s in self.seen if _start_time(p) == s]
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return [Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:120].decode(errors="replace") for p, _ in alive]


def _mock_args(tmp_path: Path, out: Path, data_dir: Path, *extra: str) -> list[str]:
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(REPLIES))
    return ["run", "--model", "mock", "-M", f"replies={replies}", "-T", f"subtasks={SUBTASKS}", "--limit", "40",
            "--data-dir", str(data_dir), "-o", str(out), *extra]


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evalsuite.cli", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def _wait_for(predicate, timeout_s: float = 300.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended before the test could act: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _lines(run: Path) -> list[dict]:
    path = run / "samples.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def _ray_info(out: Path) -> dict | None:
    runs = list(out.glob("*/run.json")) if out.exists() else []
    return json.loads(runs[0].read_text()).get("ray") if runs else None


def _assert_one_line_per_sample(run: Path, expected: int) -> None:
    keys = [(r["task"], r["sample_id"]) for r in _lines(run)]
    assert len(keys) == len(set(keys)) == expected, "a sample was lost or written twice"


@pytest.mark.model
def test_replicas_with_one_killed_mid_run_equal_a_single_process_greedy_run(tmp_path, data_dir):
    """The issue's check on the real embedded model, on a small slice: two CPU
    replicas, one SIGKILLed while it holds work; its units go to the other."""
    common = ["run", "--model", "smollm2-135m", "-T", "subtasks=navigate,snarks", "-T", "max_new_tokens=24",
              "--limit", "2", "--data-dir", str(data_dir)]
    single = evalsuite(*common, "-o", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr

    out = tmp_path / "ray"
    # unit=1: many small calls, so the victim surely has queued work when it dies.
    proc = _start([*common, "-o", str(out), "--ray", "-M", "replicas=2", "-M", "unit=1"])
    tree = ProcessTree(proc.pid)
    _wait_for(lambda: _ray_info(out) is not None, proc=proc)
    victim = _ray_info(out)["replica_info"][0]["pid"]
    _wait_for(lambda: len(_lines(_only_run(out))) >= 1, proc=proc)
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert tree.survivors() == [], "Ray processes outlived the run"

    run, base = _only_run(out), _only_run(tmp_path / "single")
    _assert_one_line_per_sample(run, 4)
    got = {(r.task, r.sample_id): r for r in RunDir(run).samples()}
    want = {(r.task, r.sample_id): r for r in RunDir(base).samples()}
    assert {k: (r.output.completions, r.score) for k, r in got.items()} == \
           {k: (r.output.completions, r.score) for k, r in want.items()}
    assert RunDir(run).results().tasks == RunDir(base).results().tasks

    ray = RunDir(run).provenance().ray
    assert ray.replicas == 2 and ray.address == "local" and ray.version == "2.60.0"
    assert [r.device for r in ray.replica_info] == ["cpu", "cpu"]
    assert ray.replica_info[0].pid == victim and ray.replica_info[0].lost
    assert ray.replica_info[1].lost is None


def test_driver_kill_minus_nine_leaves_no_ray_process_and_resume_completes(tmp_path, data_dir):
    """kill -9 of evalsuite: the private Ray instance goes within seconds; the
    resumed run (on one replica) has every sample exactly once and the
    uninterrupted run's results."""
    full = evalsuite(*_mock_args(tmp_path, tmp_path / "full", data_dir))
    assert full.returncode == 0, full.stderr

    out = tmp_path / "killed"
    proc = _start(_mock_args(tmp_path, out, data_dir, "-M", "delay=0.03", "--ray", "-M", "replicas=2", "-M", "unit=4"))
    tree = ProcessTree(proc.pid)
    _wait_for(lambda: out.exists() and any(out.iterdir()) and len(_lines(_only_run(out))) >= 40, proc=proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert tree.survivors() == [], "Ray processes outlived the killed driver"
    run = _only_run(out)
    assert 40 <= len(_lines(run)) < 200, "the kill must land mid-run"

    # Fewer replicas may finish the run (placement may change, what is computed may not).
    resumed = evalsuite("run", "--resume", str(run), "--ray", "-M", "replicas=1")
    assert resumed.returncode == 0, resumed.stderr
    _assert_one_line_per_sample(run, 200)
    assert RunDir(run).results().tasks == RunDir(_only_run(tmp_path / "full")).results().tasks
    assert RunDir(run).provenance().ray.replicas == 1


# delay: a replica's reply for its second unit leaves the process before the
# third unit's last request kills it (with instant requests the kill can beat
# the reply, and the driver rightly re-deals that unit).
ALL_LOST = ("--ray", "-M", "replicas=2", "-M", "unit=4", "-M", "kill_after=12", "-M", "delay=0.05")


def _assert_all_lost_stops_cleanly(proc: subprocess.CompletedProcess, out: Path) -> Path:
    assert proc.returncode != 0
    assert "error: all 2 Ray replicas died" in proc.stderr and "--resume" in proc.stderr
    assert "Traceback" not in proc.stderr
    run = _only_run(out)
    assert not (run / "results.json").exists()
    return run


def test_every_replica_lost_stops_with_one_line_and_keeps_the_samples(tmp_path, data_dir):
    """kill_after makes each mock replica SIGKILL itself after 12 requests: the
    run stops with one error line, no traceback, and the finished units kept."""
    out = tmp_path / "r"
    run = _assert_all_lost_stops_cleanly(evalsuite(*_mock_args(tmp_path, out, data_dir, *ALL_LOST)), out)
    # Each replica returned its first two units of 4 before dying in its third.
    _assert_one_line_per_sample(run, 16)


@pytest.mark.docker
def test_generations_buffered_for_scoring_survive_a_lost_backend(tmp_path, data_dir):
    """HumanEval scores its problems in one sandbox batch: the 16 generations
    waiting for it when the last replica dies are written (status generated),
    and --resume keeps them, generates only the rest and scores them all."""
    out = tmp_path / "r"
    args = ["run", "--model", "mock", "--tasks", "humaneval", "--limit", "40",
            "--data-dir", str(data_dir), "-o", str(out)]
    run = _assert_all_lost_stops_cleanly(evalsuite(*args, *ALL_LOST), out)
    _assert_one_line_per_sample(run, 16)
    assert {r["score"]["status"] for r in _lines(run)} == {"generated"}
    kept = {r["sample_id"]: r["output"] for r in _lines(run)}

    # The resumed replicas die after 12 requests too: 24 left take two resumes.
    # (A rescored record is appended; the latest line of a sample counts.)
    first = evalsuite("run", "--resume", str(run))
    assert len(RunDir(_assert_all_lost_stops_cleanly(first, out)).samples()) == 32
    second = evalsuite("run", "--resume", str(run))
    assert second.returncode == 0, second.stderr
    final = {r.sample_id: r for r in RunDir(run).samples()}
    assert len(final) == 40 and "generated" not in {r.score.status for r in final.values()}
    assert {k: final[k].output.model_dump(mode="json") for k in kept} == kept


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-M", "replicas=2"], "error: -M replicas=N needs --ray"),
        (["--ray", "-M", "replicas=0"], "error: -M replicas must be >= 1"),
        (["--ray", "-M", "replicas=two"], "error: -M replicas must be a whole number"),
        (["--ray", "-M", "replicas=1e3"], "error: -M replicas must be a whole number, got '1e3'"),
        # Not finite: tracebacks (OverflowError, ValueError) from math.ceil and Ray.
        (["--ray", "-M", "num_cpus=inf"], "error: -M num_cpus must be a finite number, got 'inf'"),
        (["--ray", "-M", "num_gpus=nan"], "error: -M num_gpus must be a finite number, got 'nan'"),
        (["--ray", "-M", "start_timeout=nan"], "error: -M start_timeout must be a finite number, got 'nan'"),
        (["--ray", "127.0.0.1:9", "-M", "replicas=1"], "error: cannot join the Ray cluster at 127.0.0.1:9"),
    ],
)
def test_bad_ray_options_give_one_error_line(args, message, tmp_path):
    proc = evalsuite("run", "--model", "mock", "--limit", "1", "-o", str(tmp_path), *args, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_missing_ray_is_one_error_line(tmp_path):
    blocked = "import sys; sys.modules['ray'] = None; from evalsuite.cli import main; sys.argv[0] = 'evalsuite'; main()"
    proc = subprocess.run([sys.executable, "-c", blocked, "run", "--model", "mock", "--limit", "1", "-o", str(tmp_path),
                           "--ray"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "error: --ray needs Ray: pip install 'evalsuite[ray]'"


def test_a_request_that_crashes_every_replica_fails_alone(tmp_path, data_dir):
    """A poisoned input (a segfault in a tokenizer, a GPU fault on one prompt)
    kills whichever replica runs it: it was dealt again and again until every
    replica was dead, so the run could never finish, not even with --resume.
    Requests held by a dead replica now run alone; one that kills a second
    replica is that sample's generation_error and the rest of the run finishes."""
    poison = json.loads((data_dir / "bbh" / "navigate.json").read_text())["examples"][5]["input"]
    out = tmp_path / "r"
    proc = evalsuite("run", "--model", "mock", "-M", f"crash_on={poison}", "-T", "subtasks=navigate", "--limit", "12",
                     "--data-dir", str(data_dir), "-o", str(out), "--ray", "-M", "replicas=3", "-M", "unit=4")
    assert proc.returncode == 0, proc.stderr
    run = _only_run(out)
    _assert_one_line_per_sample(run, 12)
    failed = [r for r in RunDir(run).samples() if r.score.status.value != "scored"]
    assert [r.sample_id for r in failed] == ["navigate/5"]
    assert failed[0].error.startswith("on Ray replica ") and "two Ray replicas died while running it" in failed[0].error
    assert sum(r.lost is not None for r in RunDir(run).provenance().ray.replica_info) == 2
