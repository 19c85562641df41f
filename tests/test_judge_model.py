"""End to end on the real embedded SmolLM2-135M as both the evaluated model and the judge.

A 135M judge judges badly: its parse-error rate is data, not a failure.  The
run is kept CPU-cheap with small token budgets (the defaults follow the
papers); what is checked is that every reported quantity is there and
consistent with the per-sample records.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.records import ScoreStatus
from evalsuite.rundir import RunDir
from tests.conftest import evalsuite
from tests.progress_lines import generation_lines, judging_lines

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def judged_run(data_dir, tmp_path_factory) -> tuple[Path, str]:
    """The run directory and its stderr: a log (not a terminal), with a heartbeat every second."""
    out = tmp_path_factory.mktemp("model-judge")
    proc = evalsuite(
        "run", "--model", "smollm2-135m", "--tasks", "mtbench,tinystories", "--judge", "smollm2-135m", "--limit", "1",
        "-T", "mtbench.categories=writing,math", "-T", "mtbench.max_new_tokens=48",
        "-T", "tinystories.n=2", "-T", "tinystories.max_new_tokens=48", "-J", "max_new_tokens=64",
        "--data-dir", str(data_dir), "-o", str(out), env={"EVALSUITE_PROGRESS_INTERVAL": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "parse errors" in proc.stdout  # the summary reports them per task
    (path,) = out.iterdir()
    return path, proc.stderr


@pytest.fixture(scope="module")
def run(judged_run) -> Path:
    return judged_run[0]


def test_every_judged_quantity_is_reported(run):
    rundir = RunDir(run)
    prov = rundir.provenance()
    assert prov.judge.self_judging and prov.judge.model.file_hash == prov.model.file_hash
    records = rundir.samples()
    results = rundir.results()
    for name, expected_judgments in (("mtbench", 4), ("tinystories", 2)):
        result = results.tasks[name]
        j = result.judging
        assert j.judge == prov.model.id and j.self_judging
        assert j.judgments == expected_judgments
        mine = [r for r in records if r.task == name]
        errors = sum(x.status is ScoreStatus.PARSE_ERROR for r in mine for x in r.score.judgments)
        assert j.parse_errors == errors and j.parse_error_rate == errors / expected_judgments
        assert j.length_correlation is not None and j.length_correlation.n == expected_judgments - errors
        for r in mine:
            for x in r.score.judgments:
                assert x.replies and all(isinstance(t, str) for t in x.replies)
                assert x.judge == prov.model.id and x.prompt_hash
        scored = [r for r in mine if r.score.status is ScoreStatus.SCORED]
        assert bool(result.metrics) == bool(scored)
    mtbench = results.tasks["mtbench"]
    assert set(mtbench.subtasks) == {"writing", "math"}
    for r in (r for r in records if r.task == "mtbench"):
        assert len(r.output.parts) == 2  # both turns generated, turn 2 after the model's own turn 1
        assert [x.template for x in r.score.judgments] in (["single-v1", "single-v1-multi-turn"],
                                                             ["single-math-v1", "single-math-v1-multi-turn"])
    if mtbench.metrics:
        assert {"score", "turn_1", "turn_2"} & set(mtbench.metrics)
    tiny = [r for r in records if r.task == "tinystories"]
    assert len(tiny) == 1 and len(tiny[0].output.completions) == 2
    assert all(len(x.replies) == 2 for x in tiny[0].score.judgments)  # assessment, then grades
    assert "age_groups" in results.tasks["tinystories"].notes


def test_judging_progress_in_a_log_counts_what_the_judge_was_asked(judged_run):
    """Each task's judging has its own lines, its counts those of judgments.jsonl; while the judge works the
    finished generation line is not printed again (the heartbeat fires every second)."""
    path, stderr = judged_run
    log = [json.loads(line) for line in (path / "judgments.jsonl").read_text().splitlines()]
    for name, turns in (("mtbench", 1), ("tinystories", 2)):
        asked = [j for j in log if (j["template"] == "assessment.j2+grading.j2") == (name == "tinystories")]
        judging = judging_lines(stderr, name)
        assert {int(m["total"]) for m in judging} == {len(asked)} and not any(m["open"] for m in judging), stderr
        done = [int(m["done"]) for m in judging]
        assert done[0] == 0 and done == sorted(done) and done[-1] == len(asked)
        last = judging[-1]
        assert last["eta"] == "done" and float(last["rate"]) > 0  # the judge's own tokens/s
        assert int(last["parse_errors"]) == sum(j["status"] == "parse_error" for j in asked)
        assert last["failures"] == "0"
        assert (last["replies"], last["replies_total"]) == ((str(turns * len(asked)),) * 2 if turns > 1 else (None, None))
        lines = stderr.splitlines()
        generation = generation_lines(stderr, name)
        assert sum("(100%)" in line for _, line in generation) == 1
        assert generation[-1][0] < lines.index(judging[0].group(0))
