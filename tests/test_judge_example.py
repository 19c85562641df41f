"""examples/rubric_task: a user's judged task, installed as a plugin and found through its entry point."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys

from evalsuite.rundir import RunDir
from tests.conftest import REPO, evalsuite

EXAMPLE = REPO / "examples" / "rubric_task"


def test_the_example_task_is_at_most_30_lines_of_python():
    code = [ln for ln in (EXAMPLE / "helpfulness_rubric" / "__init__.py").read_text().splitlines() if ln.strip()]
    assert len(code) <= 30
    ast.parse("\n".join(code))


def test_installed_example_runs_through_its_entry_point(tmp_path):
    # Installed into a folder on PYTHONPATH: the same entry-point discovery as `pip install`, venv untouched.
    source, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(EXAMPLE, source)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    prompts = tmp_path / "mine.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": i, "prompt": p}) for i, p in enumerate(["Say hi.", "Add 2+2."])))
    judge = tmp_path / "judge.json"
    judge.write_text(json.dumps({"Add 2+2": "Fine.\nhelpfulness: 5\naccuracy: 4\nconcision: 3",
                                 "": "Meh.\nhelpfulness: 2\naccuracy: 2\nconcision: 2"}))
    out = tmp_path / "out"
    proc = evalsuite("run", "--model", "mock", "--tasks", "helpfulness_rubric", "-T", f"data={prompts}",
                     "--judge", "mock:judge", "-J", f"replies={judge}", "-o", str(out),
                     env={"PYTHONPATH": f"{target}:{REPO}"})
    assert proc.returncode == 0, proc.stderr
    (run,) = out.iterdir()
    result = RunDir(run).results().tasks["helpfulness_rubric"]
    assert result.metrics["score"].value == (4 + 2) / 2
    assert result.metrics["helpfulness"].value == (5 + 2) / 2
    assert RunDir(run).provenance().tasks["helpfulness_rubric"].judge_templates.keys() == {"judge.j2"}
