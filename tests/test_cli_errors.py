"""User mistakes get one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import io
import json
import shlex
import shutil
import sys

import pytest
from rich.console import Console

from evalsuite import cli
from evalsuite.cli import print_summary
from evalsuite.records import MetricValue, ResultsSummary, TaskResult
from evalsuite.rundir import RunDir
from tests.conftest import evalsuite


def assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_unknown_task_suggests_close_match(data_dir, tmp_path):
    proc = evalsuite("run", "--model", "mock", "--tasks", "bhh", "--data-dir", str(data_dir), "-o", str(tmp_path))
    assert_one_line_error(proc, "unknown task 'bhh'", "did you mean bbh")


def test_unknown_task_parameter(data_dir, tmp_path):
    proc = evalsuite("run", "--model", "mock", "-T", "shot=0", "--data-dir", str(data_dir), "-o", str(tmp_path))
    assert_one_line_error(proc, "shot", "did you mean shots")


def test_bad_parameter_value(data_dir, tmp_path):
    proc = evalsuite("run", "--model", "mock", "-T", "variant=fiveshot", "--data-dir", str(data_dir), "-o", str(tmp_path))
    assert_one_line_error(proc, "bbh.variant must be one of cot, fewshot, zeroshot")


def test_unknown_bbh_subtask(data_dir, tmp_path):
    proc = evalsuite("run", "--model", "mock", "-T", "subtasks=snark", "--data-dir", str(data_dir), "-o", str(tmp_path))
    assert_one_line_error(proc, "unknown bbh subtask 'snark'", "snarks")


def test_missing_model_path(data_dir, tmp_path):
    proc = evalsuite("run", "--model", "./no/such/model", "--limit", "1", "--data-dir", str(data_dir), "-o", str(tmp_path))
    assert_one_line_error(proc, "model path ./no/such/model not found")


def test_missing_gguf_file(data_dir, tmp_path):
    proc = evalsuite("run", "--model", str(tmp_path / "x.gguf"), "--data-dir", str(data_dir), "-o", str(tmp_path))
    assert_one_line_error(proc, "GGUF file", "not found")


def test_missing_data_names_both_ways(tmp_path):
    proc = evalsuite("run", "--model", "mock", "--data-dir", str(tmp_path / "nowhere"), "-o", str(tmp_path))
    assert_one_line_error(proc, "bbh data not found", "lukaemon/bbh", "--data-dir", "EVALSUITE_DATA_DIR")


def test_malformed_row_reports_file_and_row(data_dir, tmp_path):
    mirror = tmp_path / "data"
    shutil.copytree(data_dir / "bbh", mirror / "bbh")
    path = mirror / "bbh" / "snarks.json"
    doc = json.loads(path.read_text())
    del doc["examples"][5]["target"]
    path.write_text(json.dumps(doc))
    proc = evalsuite("run", "--model", "mock", "-T", "subtasks=snarks", "--data-dir", str(mirror), "-o", str(tmp_path))
    assert_one_line_error(proc, "snarks.json", "examples[5]", "missing target")


def test_malformed_json_reports_line(data_dir, tmp_path):
    mirror = tmp_path / "data"
    shutil.copytree(data_dir / "bbh", mirror / "bbh")
    (mirror / "bbh" / "navigate.json").write_text('{"examples": [\n{"input": "x", "target": "Yes"},\n{"input": oops}\n]}')
    proc = evalsuite("run", "--model", "mock", "-T", "subtasks=navigate", "--data-dir", str(mirror), "-o", str(tmp_path))
    assert_one_line_error(proc, "navigate.json:3", "malformed JSON")


@pytest.mark.parametrize("args,needle", [
    (["--batch-size", "lots"], "--batch-size"),
    (["--limit", "0"], "--limit"),
    (["-T", "novalue"], "-T expects KEY=VALUE"),
])
def test_bad_options(data_dir, tmp_path, args, needle):
    proc = evalsuite("run", "--model", "mock", *args, "--data-dir", str(data_dir), "-o", str(tmp_path))
    assert_one_line_error(proc, needle)


def test_loglikelihood_capability_is_declared_not_faked(tmp_path):
    from evalsuite.backends.base import BackendOptions, CapabilityError, ChoiceRequest, LOGLIKELIHOOD, require
    from evalsuite.backends.mock import MockBackend

    backend = MockBackend("mock", BackendOptions())
    assert LOGLIKELIHOOD not in backend.capabilities
    with pytest.raises(CapabilityError, match="cannot compute loglikelihood"):
        require(backend, LOGLIKELIHOOD)
    with pytest.raises(CapabilityError):
        list(backend.loglikelihood([ChoiceRequest("ctx", [" a", " b"])]))


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "CPU", ""])
def test_bad_device_is_one_line_before_the_model_loads(tmp_path, device):
    # smollm2-135m would load for ~10 s and then fail inside torch; the check comes first
    proc = evalsuite("run", "--model", "smollm2-135m", "--tasks", "bbh", "--limit", "1", "--device", device,
                     "-o", str(tmp_path), timeout=60)
    assert_one_line_error(proc, f"--device '{device}'", "auto, cpu, cuda or cuda:N")
    assert proc.returncode == 2
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("task,param,needle", [
    ("mtbench", "categories=writing,nosuch", "unknown mtbench category 'nosuch'"),
    ("bbh", "subtasks=navigate,navigat", "navigat"),
])
def test_a_value_only_the_task_can_check_fails_before_the_model_loads(tmp_path, data_dir, task, param, needle):
    # smollm2-135m (and its judge) would load first, for seconds here and minutes for a served model
    proc = evalsuite("run", "--model", "smollm2-135m", "--tasks", task, "-T", param, "--judge", "smollm2-135m",
                     "--limit", "1", "--data-dir", str(data_dir), "-o", str(tmp_path), timeout=60)
    assert_one_line_error(proc, needle)
    assert proc.returncode == 2
    assert "loading model" not in proc.stderr and not any(tmp_path.iterdir())


HUMANEVAL_53 = '{"task_id": "HumanEval/53", "completion": "    return x + y\\n"}\n'


@pytest.mark.parametrize("task,param,needle", [
    ("humaneval_plus", "min_time_limit=-1", "humaneval_plus.min_time_limit must be > 0, got -1"),
    ("humaneval_plus", "min_time_limit=0", "humaneval_plus.min_time_limit must be > 0"),
    ("humaneval_plus", "time_limit_factor=nan", "humaneval_plus.time_limit_factor must be a finite number"),
    ("humaneval_plus", "time_limit_factor=-2", "humaneval_plus.time_limit_factor must be > 0"),
    ("humaneval", "timeout_s=0", "humaneval.timeout_s must be > 0, got 0"),
    ("humaneval", "timeout_s=inf", "humaneval.timeout_s must be a finite number"),
    ("humaneval", "workers=0", "humaneval.workers must be >= 1, got 0"),
    ("humaneval", "n=0", "humaneval.n must be >= 1"),
    ("humaneval", "temperature=-0.5", "humaneval.temperature must be >= 0"),
    ("humaneval", "top_p=1.5", "humaneval.top_p must be > 0 and <= 1"),
    ("humaneval", "max_new_tokens=0", "humaneval.max_new_tokens must be >= 1"),
    ("humaneval", "max_new_tokens=many", "humaneval.max_new_tokens: cannot interpret 'many' as int (>= 1) | None"),
])
def test_out_of_range_task_parameter_fails_before_scoring(tmp_path, data_dir, task, param, needle):
    # before the fix these scored a correct solution as timed_out (pass@1 0, exit 0) or were taken silently
    samples = tmp_path / "ok.jsonl"
    samples.write_text(HUMANEVAL_53)
    proc = evalsuite("score", task, "--samples", str(samples), "-T", param, "--data-dir", str(data_dir), timeout=60)
    assert_one_line_error(proc, needle)
    assert proc.returncode == 2
    assert not (tmp_path / "ok.jsonl_results.jsonl").exists()  # no sandbox work, nothing written


@pytest.mark.parametrize("param,needle", [
    ("bbh.temperature=inf", "bbh.temperature must be a finite number"),
    ("bbh.self_consistency=0", "bbh.self_consistency must be >= 1"),
    ("bbh.max_new_tokens=-1", "bbh.max_new_tokens must be >= 1"),
    ("bbh.shots=-1", "bbh.shots must be >= 0"),
    ("agieval.temperature=nan", "agieval.temperature must be a finite number"),
    ("tinystories.top_p=0", "tinystories.top_p must be > 0 and <= 1"),
])
def test_out_of_range_run_parameter(tmp_path, data_dir, param, needle):
    tasks = param.split(".")[0]
    proc = evalsuite("run", "--model", "mock", "--tasks", tasks, "-T", param, "--data-dir", str(data_dir),
                     "-o", str(tmp_path), timeout=60)
    assert_one_line_error(proc, needle)
    assert proc.returncode == 2
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("line,needle", [
    ('{"task_id": "HumanEval/0", "completion": 5}', "f.jsonl:1: field 'completion' must be a string, got a number"),
    ('{"task_id": "HumanEval/0", "solution": null}', "f.jsonl:1: field 'solution' must be a string, got null"),
    ('{"task_id": 0, "completion": "x"}', "f.jsonl:1: field 'task_id' must be a string, got a number"),
])
def test_samples_field_of_wrong_type_is_named(tmp_path, data_dir, line, needle):
    samples = tmp_path / "f.jsonl"
    samples.write_text(line + "\n")
    proc = evalsuite("score", "humaneval", "--samples", str(samples), "--data-dir", str(data_dir), timeout=60)
    assert_one_line_error(proc, needle)
    assert proc.returncode == 2 and "missing" not in proc.stderr


def test_samples_of_another_task_say_which_ids_are_expected(tmp_path, data_dir):
    samples = tmp_path / "f.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "    return 1\\n"}\n')
    proc = evalsuite("score", "bbh", "--samples", str(samples), "--data-dir", str(data_dir), timeout=60)
    assert_one_line_error(proc, "f.jsonl:1: unknown task_id 'HumanEval/0'", "not a problem of bbh",
                          "task_ids look like 'boolean_expressions/0'")
    assert proc.returncode == 2
    assert not (tmp_path / "f.jsonl_results.jsonl").exists()


def test_samples_of_a_judged_task_point_to_the_judge(tmp_path, data_dir):
    samples = tmp_path / "f.jsonl"
    samples.write_text('{"task_id": "81", "completion": "x"}\n')
    proc = evalsuite("score", "mtbench", "--samples", str(samples), "--data-dir", str(data_dir), timeout=60)
    assert_one_line_error(proc, "mtbench is graded by an LLM judge", "--judge MODEL")
    assert proc.returncode == 2


def test_a_results_warning_is_printed_as_written():
    # A plugin task's warning may quote a name or a model's text: "[/]" was a MarkupError after the whole run.
    warning = "samples like [/] and [bold]x[/bold] :ok: were set aside"
    result = TaskResult(n_samples=1, metrics={"acc": MetricValue(value=1.0)}, headline="acc", warnings=[warning])
    out = io.StringIO()
    print_summary(ResultsSummary(run_id="r", model="m", tasks={"plugin": result}), Console(file=out, width=200))
    assert f"plugin: {warning}" in out.getvalue()


@pytest.mark.parametrize("command", ["run", "score"])
def test_ctrl_c_while_the_results_are_written_names_the_command_that_finishes(tmp_path, data_dir, monkeypatch,
                                                                               capsys, command):
    # Ctrl-C after the last sample, as results.json is written (it printed a bare "interrupted").
    out = tmp_path / "o"
    args = ["--model", "mock", "--tasks", "bbh", "-T", "subtasks=navigate", "--limit", "2",
            "--data-dir", str(data_dir), "-o", str(out)]
    if command == "score":
        assert evalsuite("run", *args, "--generate-only").returncode == 0
        argv = ["score", "--run", str(next(out.iterdir())), "--data-dir", str(data_dir)]
    else:
        argv = ["run", *args]

    def ctrl_c(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "write_results", ctrl_c)
    monkeypatch.setattr(sys, "argv", ["evalsuite", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 130
    (run,) = out.iterdir()
    message = capsys.readouterr().err.strip().splitlines()[-1]
    continued = f"evalsuite run --resume {run}" if command == "run" else f"evalsuite score --run {run}"
    assert message == f"interrupted: all finished work is saved; continue with `{continued}`"
    monkeypatch.undo()
    finished = evalsuite(*shlex.split(continued)[1:], "--data-dir", str(data_dir))
    assert finished.returncode == 0, finished.stderr
    assert json.loads((run / "results.json").read_text())["tasks"]["bbh"]["status_counts"] == {"scored": 2}
