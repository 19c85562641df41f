"""The files a run writes: shapes, schema versions and provenance."""

from __future__ import annotations

import json

from evalsuite.records import SCHEMA_VERSION, RunProvenance, SampleResult
from tests.conftest import evalsuite


def test_run_writes_typed_files_with_full_provenance(tmp_path, data_dir):
    proc = evalsuite("run", "--model", "mock", "--tasks", "bbh", "-T", "variant=fewshot", "--limit", "2",
                     "--seed", "7", "--system-message", "Be brief.", "--data-dir", str(data_dir), "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (run,) = tmp_path.iterdir()
    assert "run directory:" in proc.stdout and "exact_match" in proc.stdout

    results = json.loads((run / "results.json").read_text())
    bbh = results["tasks"]["bbh"]
    assert results["schema_version"] == SCHEMA_VERSION
    assert bbh["n_samples"] == 54 and len(bbh["subtasks"]) == 27
    for name in ("exact_match", "exact_match_macro", "exact_match_micro"):
        metric = bbh["metrics"][name]
        assert set(metric) == {"value", "stderr", "ci", "ci_method", "n"}
        assert isinstance(metric["value"], float) and metric["ci_method"] == "wilson"
        assert metric["ci"][0] <= metric["value"] <= metric["ci"][1]
    sub = bbh["subtasks"]["navigate"]
    assert sub["n_samples"] == 2 and "exact_match" in sub["metrics"]
    assert bbh["headline"] == "exact_match" and bbh["headline_aggregation"] == "macro"

    prov = RunProvenance.model_validate_json((run / "run.json").read_text())
    task = prov.tasks["bbh"]
    assert prov.schema_version == SCHEMA_VERSION and prov.seed == 7 and prov.finished_at >= prov.started_at
    assert prov.evalsuite_version and prov.git_sha and len(prov.git_sha) == 40
    assert task.params["variant"] == "fewshot" and task.params["shots"] == 3
    assert task.dataset.n_rows == 6511 and len(task.dataset.content_hash) == 64
    assert task.dataset.source.endswith("bbh")
    assert set(task.template_hashes) == {"answer_prefix.j2", "question.j2", "shot_answer.j2"} | {
        f"cot-prompts/{name}.txt" for name in bbh["subtasks"]}  # the shipped official prompts
    assert task.generation.stop and task.generation.max_new_tokens == 64
    assert task.system_message == "Be brief."
    assert prov.model.backend == "mock"

    lines = (run / "samples.jsonl").read_text().splitlines()
    records = [SampleResult.model_validate_json(line) for line in lines]
    assert len(records) == 54 and all(r.schema_version == SCHEMA_VERSION for r in records)
    first = records[0]
    assert first.prompt and first.prompt_hash and first.output.completions == ["So the answer is (A)."]
    assert first.score.status.value == "scored" and "exact_match" in first.score.metrics


def test_same_inputs_same_hashes_different_template_different_hash(tmp_path, data_dir):
    from evalsuite.task import TaskContext
    from evalsuite.templates import Templates
    from tasks.bbh import bbh

    a = bbh(TaskContext(data_dir=data_dir), subtasks=["navigate"])
    b = bbh(TaskContext(data_dir=data_dir), subtasks=["navigate"])
    assert a.dataset.content_hash == b.dataset.content_hash and a.template_hashes == b.template_hashes
    c = bbh(TaskContext(data_dir=data_dir), subtasks=["snarks"])
    assert c.dataset.content_hash != a.dataset.content_hash
    (tmp_path / "q.j2").write_text("Q: {{ input }}")
    before = Templates(tmp_path).hashes
    (tmp_path / "q.j2").write_text("Question: {{ input }}")
    assert Templates(tmp_path).hashes != before


def test_tasks_command_lists_variants():
    proc = evalsuite("tasks")
    assert proc.returncode == 0, proc.stderr
    assert "bbh" in proc.stdout and "zeroshot" in proc.stdout and "chain-of-thought" in proc.stdout
