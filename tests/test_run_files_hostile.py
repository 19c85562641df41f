"""Damaged and foreign run files: one `error:` line (exit 2), never a traceback
or a number computed from garbage.  Each case damages a copy of one real run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evalsuite.rundir import RunDir
from tests.conftest import evalsuite


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile")
    proc = evalsuite("run", "--model", "mock", "-T", "subtasks=navigate,date_understanding", "--limit", "4",
                     "--data-dir", str(data_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    (path,) = out.iterdir()
    return path


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "copy"))


def _one_error_line(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _gate(base: Path, cand: Path):
    return evalsuite("gate", "--baseline", str(base), "--candidate", str(cand))


@pytest.mark.parametrize("name", ["run.json", "results.json"])
def test_non_utf8_json_file(run, tmp_path, name):
    bad = _copy(run, tmp_path)
    (bad / name).write_bytes(b"\xff" + (bad / name).read_bytes())
    _one_error_line(_gate(run, bad), name, "not UTF-8")


@pytest.mark.parametrize("text", ["[1, 2]", '"run"', "null", "3"])
def test_json_file_that_is_not_an_object(run, tmp_path, text):
    bad = _copy(run, tmp_path)
    (bad / "run.json").write_text(text)
    _one_error_line(_gate(run, bad), "run.json", "expected a JSON object")


def test_non_utf8_sample_line_names_its_line(run, tmp_path):
    bad = _copy(run, tmp_path)
    lines = (bad / "samples.jsonl").read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"task"', b'"t\xe9sk"', 1)  # Latin-1 bytes in a complete line
    (bad / "samples.jsonl").write_bytes(b"\n".join(lines))
    _one_error_line(_gate(run, bad), "samples.jsonl:3", "not UTF-8")


def test_torn_last_line_cut_inside_a_character_is_ignored(run, tmp_path):
    # A crash mid-write can cut a multi-byte character: the torn tail must not
    # make the complete lines before it unreadable.
    bad = _copy(run, tmp_path)
    path = bad / "samples.jsonl"
    complete = path.read_bytes()
    path.write_bytes(complete + '{"task": "bbh", "sample_id": "é'.encode()[:-1])
    assert len(RunDir(bad).samples()) == len(RunDir(run).samples())


@pytest.mark.parametrize("literal", ["NaN", "Infinity"])
def test_non_finite_score_in_a_sample_line(run, tmp_path, literal):
    # Read back, a NaN once reached the gate, which printed "nan" and passed (exit 0).
    bad = _copy(run, tmp_path)
    path = bad / "samples.jsonl"
    text = path.read_text()
    assert '"exact_match":0.0' in text
    path.write_text(text.replace('"exact_match":0.0', f'"exact_match":{literal}', 1))
    _one_error_line(_gate(run, bad), "samples.jsonl:", "finite")


def test_newer_schema_with_unknown_fields_says_so(run, tmp_path):
    bad = _copy(run, tmp_path)
    path = bad / "run.json"
    path.write_text(path.read_text().replace('"schema_version": "1.0"', '"schema_version": "1.9", "new_field": 1', 1))
    _one_error_line(_gate(run, bad), "run.json", "newer evalsuite")
    path.write_text(path.read_text().replace('"schema_version": "1.9"', '"schema_version": "2.0"', 1))
    _one_error_line(_gate(run, bad), "schema version 2.0")


def test_a_whole_last_record_without_its_newline_is_kept(run, tmp_path):
    # A file written elsewhere (or a write cut just before its newline) lost its last
    # sample silently: the gate then called the runs not comparable.
    bad = _copy(run, tmp_path)
    path = bad / "samples.jsonl"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert len(RunDir(bad).samples()) == len(RunDir(run).samples())
    proc = _gate(run, bad)
    assert proc.returncode == 0 and "NOT COMPARABLE" not in proc.stdout, proc.stdout
    RunDir(bad).truncate_torn_tail()  # what resume does before appending: complete the line
    assert path.read_bytes().endswith(b"}\n") and len(RunDir(bad).samples()) == len(RunDir(run).samples())


@pytest.mark.parametrize(
    ("line", "written", "needles"),
    [
        (1, '"schema_version":"2.0"', ("samples.jsonl:2", "schema version 2.0")),
        # As run.json does: "not a valid sample record" alone read like a damaged file.
        (2, '"schema_version":"1.3","confidence":0.5',
         ("samples.jsonl:3: not a valid sample record (confidence: Extra inputs",
          "written by a newer evalsuite: schema 1.3, this one reads 1.0")),
    ],
)
def test_a_sample_line_of_another_schema_is_refused_and_says_which(run, tmp_path, line, written, needles):
    bad = _copy(run, tmp_path)
    path = bad / "samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[line] = lines[line].replace('"schema_version":"1.0"', written, 1)
    path.write_text("".join(lines))
    _one_error_line(_gate(run, bad), *needles)
