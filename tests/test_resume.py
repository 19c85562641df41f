"""A run killed with SIGKILL resumes to exactly the results of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from evalsuite.records import ScoreStatus
from evalsuite.rundir import RunDir
from tests.conftest import REPO, evalsuite

SUBTASKS = "boolean_expressions,snarks,navigate,object_counting,word_sorting"
REPLIES = {
    "Boolean": "not True is False. So the answer is False.",
    "sarcastic": "So the answer is (B).",
    "always face forward": "So the answer is No.",
    "How many": "So the answer is 5.",
}


def _args(tmp_path, out):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(REPLIES))
    return ["run", "--model", "mock", "-M", f"replies={replies}", "-M", "delay=0.02",
            "-T", f"subtasks={SUBTASKS}", "--limit", "40", "--data-dir", str(os.environ.get("EVALSUITE_DATA_DIR", REPO.parent / "shared" / "data")),
            "-o", str(out)]


def _only_run(out):
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_kill_minus_nine_then_resume_equals_uninterrupted(tmp_path):
    full = evalsuite(*_args(tmp_path, tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    expected = RunDir(_only_run(tmp_path / "full")).results()

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "evalsuite.cli", *_args(tmp_path, out)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = [p for p in out.glob("*/samples.jsonl")] if out.exists() else []
        if runs and runs[0].read_text().count("\n") >= 60:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = _only_run(out)
    before = RunDir(run).samples()
    assert 60 <= len(before) < 200, "the kill must land mid-run"
    assert not (run / "results.json").exists()

    resumed = evalsuite("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    after = RunDir(run).samples()
    assert len(after) == 200
    # Completed samples were not generated again: one line per sample.
    lines = [ln for ln in (run / "samples.jsonl").read_text().splitlines() if ln.strip()]
    assert len(lines) == 200
    got = RunDir(run).results()
    assert got.tasks == expected.tasks
    assert RunDir(run).provenance().finished_at is not None


def test_resume_rejects_conflicting_options(tmp_path):
    ok = evalsuite(*_args(tmp_path, tmp_path / "r"))
    assert ok.returncode == 0, ok.stderr
    run = _only_run(tmp_path / "r")
    proc = evalsuite("run", "--resume", str(run), "--tasks", "agieval")
    assert proc.returncode != 0
    assert "differs from the run being resumed" in proc.stderr and "Traceback" not in proc.stderr


def test_generation_errors_are_recorded_then_retried(tmp_path, data_dir):
    out = tmp_path / "err"
    proc = evalsuite("run", "--model", "mock", "-M", "fail_every=3", "-T", "subtasks=navigate",
                     "--limit", "9", "--data-dir", str(data_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    run = _only_run(out)
    statuses = [r.score.status for r in RunDir(run).samples()]
    assert statuses.count(ScoreStatus.GENERATION_ERROR) >= 1
    results = RunDir(run).results()
    # Failed samples are counted, never folded into the score.
    bbh = results.tasks["bbh"]
    assert bbh.status_counts["generation_error"] == statuses.count(ScoreStatus.GENERATION_ERROR)
    assert bbh.subtasks["navigate"].status_counts.get("scored", 0) + bbh.status_counts["generation_error"] == 9


def test_torn_last_line_is_ignored_and_rewritten(tmp_path, data_dir):
    out = tmp_path / "torn"
    proc = evalsuite("run", "--model", "mock", "-T", "subtasks=navigate", "--limit", "5",
                     "--data-dir", str(data_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    run = _only_run(out)
    path = run / "samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # died mid-write
    assert len(RunDir(run).samples()) == 3
    resumed = evalsuite("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert len(RunDir(run).samples()) == 5


def _navigate_copy(tmp_path, data_dir):
    """A private copy of BBH navigate (and its CoT prompts) that a test may edit."""
    import shutil

    bbh = tmp_path / "data" / "bbh"
    bbh.mkdir(parents=True)
    shutil.copy(data_dir / "bbh" / "navigate.json", bbh)
    shutil.copytree(data_dir / "bbh" / "cot-prompts", bbh / "cot-prompts")
    return tmp_path / "data"


def _half_done_run(tmp_path, data_dir, *extra):
    """A finished 6-sample run cut back to its first 3 samples, as after a kill."""
    out = tmp_path / "out"
    proc = evalsuite("run", "--model", "mock", "-T", "subtasks=navigate", "--limit", "6",
                     "--data-dir", str(data_dir), "-o", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    run = _only_run(out)
    path = run / "samples.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))
    (run / "results.json").unlink()
    return run


def test_resume_refuses_when_the_data_changed_since_the_run_started(tmp_path, data_dir):
    """The dataset file was edited between the kill and --resume: half the
    samples would be scored against the old targets, half against the new,
    under a run.json claiming the new data."""
    data = _navigate_copy(tmp_path, data_dir)
    run = _half_done_run(tmp_path, data)
    before = (run / "samples.jsonl").read_text()
    path = data / "bbh" / "navigate.json"
    rows = json.loads(path.read_text())
    for row in rows["examples"][:6]:
        row["target"] = "Yes" if row["target"] == "No" else "No"
    path.write_text(json.dumps(rows))

    proc = evalsuite("run", "--resume", str(run))
    assert proc.returncode != 0
    (error,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert error.startswith("error: --resume: bbh: dataset content hash differs from the run being resumed")
    assert "Traceback" not in proc.stderr
    assert (run / "samples.jsonl").read_text() == before and not (run / "results.json").exists()


def test_resume_refuses_a_model_other_than_the_recorded_one(tmp_path, data_dir):
    """run.json records the weights' hash; a resumed run whose model resolves
    to other weights (a checkpoint overwritten in place) must not mix them."""
    run = _half_done_run(tmp_path, data_dir)
    prov = json.loads((run / "run.json").read_text())
    prov["model"]["file_hash"] = "0" * 64
    (run / "run.json").write_text(json.dumps(prov))

    proc = evalsuite("run", "--resume", str(run))
    assert proc.returncode != 0
    (error,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert error.startswith("error: --resume: the model differs from the run being resumed (file_hash: '0000")
    assert "Traceback" not in proc.stderr
    assert len(RunDir(run).samples()) == 3


def test_a_run_still_being_written_cannot_be_resumed_or_scored_twice(tmp_path):
    """A second `--resume` (a CI retry, a second terminal) while the run is
    still going generated the same samples again in a race on one
    samples.jsonl; now it is refused, and the run itself is unaffected."""
    out = tmp_path / "busy"
    proc = subprocess.Popen([sys.executable, "-m", "evalsuite.cli", *_args(tmp_path, out), "-M", "delay=0.05"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.exists() and list(out.glob("*/samples.jsonl"))):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before the test could act"
        time.sleep(0.05)
    run = _only_run(out)
    for args in (["run", "--resume", str(run)], ["score", "--run", str(run)]):
        second = evalsuite(*args)
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip() == (f"error: {run} is in use by another evalsuite process (pid {proc.pid}): "
                                         "wait for it to finish (or stop it) and try again")
    assert proc.poll() is None, "the second commands must run while the first is writing"
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    lines = [ln for ln in (run / "samples.jsonl").read_text().splitlines() if ln.strip()]
    assert len(lines) == len(RunDir(run).samples()) == 200
    # The claim ends with the process (also with a kill -9: the kernel drops the lock).
    assert evalsuite("score", "--run", str(run)).returncode == 0


def test_a_request_the_backend_never_answers_is_a_generation_error_not_a_lost_sample(tmp_path, data_dir):
    """A backend (a plugin, a replica) whose generate() ends without a result
    for some request: the run finished with those samples silently missing
    from samples.jsonl and from every count in results.json."""
    out = tmp_path / "dropped"
    proc = evalsuite("run", "--model", "mock", "-M", "drop_every=5", "-T", "subtasks=navigate", "--limit", "10",
                     "--data-dir", str(data_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    run = _only_run(out)
    records = RunDir(run).samples()
    assert len(records) == 10
    lost = [r for r in records if r.score.status is ScoreStatus.GENERATION_ERROR]
    assert len(lost) == 2 and all(r.error == "the backend returned no result for this request" for r in lost)
    assert RunDir(run).results().tasks["bbh"].status_counts == {"scored": 8, "generation_error": 2}


def test_resume_keeps_the_original_command_and_records_each_continuation(tmp_path, data_dir):
    """run.json's command, evalsuite version and commit were replaced by the
    resuming process's: the command that defined the run was lost, and a run
    finished by another evalsuite looked as if one version had made it all."""
    run = _half_done_run(tmp_path, data_dir)
    first = RunDir(run).provenance()
    for _ in range(2):
        (run / "results.json").unlink(missing_ok=True)
        resumed = evalsuite("run", "--resume", str(run))
        assert resumed.returncode == 0, resumed.stderr
    prov = RunDir(run).provenance()
    assert (prov.command, prov.evalsuite_version, prov.git_sha, prov.started_at) == \
           (first.command, first.evalsuite_version, first.git_sha, first.started_at)
    assert "--limit" in prov.command and "--resume" not in prov.command
    assert [c.command[-2:] for c in prov.continued] == [["--resume", str(run)]] * 2
    assert all(c.evalsuite_version == first.evalsuite_version and c.started_at >= first.started_at for c in prov.continued)


def test_resume_reads_the_same_data_from_where_it_moved(tmp_path, data_dir):
    """The data folder moved (another mount, another machine) between the kill
    and --resume: --data-dir NEW was refused as 'differs from the run being
    resumed' although the content is the same; the content hash decides now."""
    import shutil

    data = _navigate_copy(tmp_path, data_dir)
    run = _half_done_run(tmp_path, data)
    moved = Path(shutil.move(str(data), str(tmp_path / "moved")))
    proc = evalsuite("run", "--resume", str(run), "--data-dir", str(moved))
    assert proc.returncode == 0, proc.stderr
    assert len(RunDir(run).samples()) == 6
    assert RunDir(run).provenance().command_config["data_dir"] == str(moved)


def test_resume_refuses_a_judge_other_than_the_recorded_one(tmp_path, data_dir):
    """As for the evaluated model: judgments from other judge weights would be
    mixed into one judged score."""
    out = tmp_path / "judged"
    proc = evalsuite("run", "--model", "mock", "--tasks", "mtbench", "--judge", "mock", "-J", "reply=Rating: [[7]]",
                     "--limit", "2", "--data-dir", str(data_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    run = _only_run(out)
    (run / "results.json").unlink()
    prov = json.loads((run / "run.json").read_text())
    prov["judge"]["model"]["file_hash"] = "0" * 64
    (run / "run.json").write_text(json.dumps(prov))

    proc = evalsuite("run", "--resume", str(run))
    assert proc.returncode != 0
    (error,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert error.startswith("error: --resume: the judge differs from the run being resumed (file_hash: '0000")


def test_a_file_system_without_locks_still_runs(tmp_path, monkeypatch):
    """Some network and FUSE file systems refuse flock (ENOLCK, EOPNOTSUPP):
    the claim on a run must not turn every run there into a traceback."""
    import errno
    import fcntl

    def refuse(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    with RunDir(tmp_path / "run").claimed():
        pass
