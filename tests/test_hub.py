"""The Hugging Face Hub data path, offline.

The mirror's rows are written in hub layout -- a local folder that
``datasets.load_dataset(path, config, split=...)`` reads, with the configs and
splits of the hub dataset -- and loaded through ``DataSource.hub_rows`` by the
real task factories (only the hub id is pointed at the folder).  Both paths
must give the same samples and byte-identical prompts.
"""

from __future__ import annotations

import gzip
import importlib
import json
from pathlib import Path

import pytest

from evalsuite.errors import UserError
from evalsuite.task import TaskContext

from tests.conftest import DATA_DIR


def write_hub_layout(folder: Path, configs: dict[str, list[dict]], split: str = "test") -> Path:
    """One parquet file per config, declared in README.md as the hub's converted datasets are."""
    import datasets

    yaml = ["---", "configs:"]
    for name, rows in configs.items():
        (folder / name).mkdir(parents=True)
        datasets.Dataset.from_list(rows).to_parquet(str(folder / name / f"{split}-00000-of-00001.parquet"))
        yaml += [f"- config_name: {name}", "  data_files:", f"  - split: {split}", f"    path: {name}/{split}-*.parquet"]
    (folder / "README.md").write_text("\n".join([*yaml, "---", ""]), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """datasets' cache in a temporary folder, offline."""
    import datasets

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def bbh_hub(tmp_path_factory, hub_cache):
    from tasks.bbh import SUBTASKS

    configs = {name: json.loads((DATA_DIR / "bbh" / f"{name}.json").read_text())["examples"] for name in SUBTASKS}
    return write_hub_layout(tmp_path_factory.mktemp("hub") / "bbh", configs)


@pytest.fixture
def no_mirror(monkeypatch):
    monkeypatch.delenv("EVALSUITE_DATA_DIR", raising=False)
    return TaskContext(data_dir=None)


def test_bbh_hub_layout_has_the_configs_and_split_of_lukaemon_bbh(bbh_hub):
    import datasets

    from tasks.bbh import SUBTASKS

    assert sorted(datasets.get_dataset_config_names(str(bbh_hub))) == sorted(SUBTASKS)
    assert datasets.get_dataset_split_names(str(bbh_hub), "snarks") == ["test"]


def _prompts(task):
    """(id, target, prompt) of every sample; for log-likelihood requests the context and continuations."""
    out = []
    for s in task.samples:
        req = task.request(s)
        out.append((s.id, s.target, (req.context, req.continuations) if hasattr(req, "context") else req.prompt))
    return out


@pytest.mark.parametrize("params,chat,every", [
    ({"variant": "cot"}, False, True),  # all 6,511 items
    ({"variant": "fewshot"}, False, False),
    ({"variant": "zeroshot"}, False, False),
    ({"variant": "mc"}, False, False),
    ({"variant": "cot", "fewshot_as_chat": True}, True, False),
])
def test_bbh_hub_and_mirror_build_byte_identical_prompts(bbh_hub, no_mirror, monkeypatch, params, chat, every):
    import tasks.bbh
    from tasks.bbh import bbh

    if not every:  # three subtasks suffice for the other variants
        params = {**params, "subtasks": ["boolean_expressions", "movie_recommendation", "snarks"]}
    mirror = bbh(TaskContext(data_dir=DATA_DIR, chat=chat), **params)
    monkeypatch.setattr(tasks.bbh, "HUB_ID", str(bbh_hub))
    hub = bbh(TaskContext(data_dir=None, chat=chat), **params)
    assert hub.dataset.source == f"hf://{bbh_hub}" and mirror.dataset.source.endswith("bbh")
    assert [s.id for s in hub.samples] == [s.id for s in mirror.samples]
    assert hub.template_hashes == mirror.template_hashes  # the shipped prompts, hashed alike
    assert hub.params == mirror.params
    assert _prompts(hub) == _prompts(mirror)
    if params["variant"] == "cot" and not chat:  # the hub path is not silently zero-shot
        first = hub.request(hub.samples[0]).prompt
        assert first.count("\nA: Let's think step by step.") == 4 and first.startswith("Evaluate the result")


def test_bbh_hub_load_failure_is_one_user_error(no_mirror, monkeypatch, tmp_path, hub_cache):
    import tasks.bbh
    from tasks.bbh import bbh

    monkeypatch.setattr(tasks.bbh, "HUB_ID", str(tmp_path / "missing"))
    with pytest.raises(UserError, match=r"bbh data not found \(hub load of .*missing/boolean_expressions failed"):
        bbh(no_mirror, subtasks=["boolean_expressions"])


def test_humaneval_hub_and_mirror_build_the_same_task(tmp_path, hub_cache, no_mirror, monkeypatch):
    from tasks.humaneval import humaneval

    build_module = importlib.import_module("tasks.humaneval.build")  # the package re-exports build()

    with gzip.open(DATA_DIR / "humaneval" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    hub_dir = write_hub_layout(tmp_path / "openai_humaneval", {"openai_humaneval": rows})
    monkeypatch.setattr(build_module, "HUB_ID", str(hub_dir))
    for chat in (False, True):  # completion and instruct prompts
        mirror = humaneval(TaskContext(data_dir=DATA_DIR, chat=chat))
        hub = humaneval(TaskContext(data_dir=None, chat=chat))
        assert len(hub.samples) == 164 and hub.dataset.source == f"hf://{hub_dir}"
        assert [(s.id, s.input, s.target) for s in hub.samples] == [(s.id, s.input, s.target) for s in mirror.samples]
        assert [hub.request(s).prompt for s in hub.samples] == [mirror.request(s).prompt for s in mirror.samples]


@pytest.mark.parametrize("task_name,params", [
    ("agieval", {}), ("agieval_en", {}), ("agieval_zh", {}), ("agieval_orca", {}),
    ("humaneval_plus", {}), ("humaneval_plus", {"variant": "mini"}),
])
def test_tasks_that_need_the_mirror_say_so(no_mirror, task_name, params):
    import tasks.agieval
    import tasks.humaneval

    factory = getattr(tasks.agieval if task_name.startswith("agieval") else tasks.humaneval, task_name)
    with pytest.raises(UserError) as err:
        factory(no_mirror, **params)
    message = str(err.value)
    assert message.startswith(f"{task_name} reads only the local mirror of its original files (")
    assert "--data-dir DIR" in message and "EVALSUITE_DATA_DIR=DIR" in message
    assert "bbh and humaneval can read the Hugging Face Hub instead" in message


def test_cli_names_the_task_that_needs_the_mirror(cli, tmp_path):
    out = cli("run", "--model", "mock", "--tasks", "agieval_orca", "--limit", "1", "-o", str(tmp_path),
              env={"EVALSUITE_DATA_DIR": ""})
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode != 0 and len(errors) == 1 and "Traceback" not in out.stderr
    assert "agieval_orca reads only the local mirror" in errors[0] and "humaneval_plus" in errors[0]
