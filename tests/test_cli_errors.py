"""User mistakes get one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest

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
