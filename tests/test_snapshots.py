"""Snapshot tests: the first rendered prompts of every task variant are pinned.

An accidental change to a template, to prompt assembly or to option handling
changes a rendered prompt and fails here.  After an *intended* change,
regenerate with ``EVALSUITE_UPDATE_GOLDEN=1 pytest tests/test_snapshots.py``
and review the diff of tests/golden/ (template hashes are pinned too, so the
provenance change is visible in the same diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from evalsuite.records import Message
from evalsuite.task import ChoiceRequest, TaskContext

from tests.conftest import DATA_DIR as DATA
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("EVALSUITE_UPDATE_GOLDEN") == "1"

BBH_SUBTASKS = ["boolean_expressions", "date_understanding"]
AG_SUBSETS = ["aqua-rat", "gaokao-mathcloze", "gaokao-mathqa", "math", "sat-en-without-passage"]
TEXT = TaskContext(data_dir=DATA, chat=False)
CHAT = TaskContext(data_dir=DATA, chat=True, system_message="You are a careful exam taker.")

CASES: dict[str, tuple[str, TaskContext, dict[str, Any]]] = {
    "bbh-cot": ("bbh", TEXT, {"variant": "cot"}),
    "bbh-fewshot": ("bbh", TEXT, {"variant": "fewshot"}),
    "bbh-zeroshot": ("bbh", TEXT, {"variant": "zeroshot"}),
    "bbh-mc": ("bbh", TEXT, {"variant": "mc"}),
    "bbh-fewshot-chat": ("bbh", CHAT, {"variant": "fewshot", "fewshot_as_chat": True}),
    "bbh-cot-chat": ("bbh", CHAT, {"variant": "cot"}),
    "agieval-zeroshot": ("agieval", TEXT, {"variant": "zeroshot"}),
    "agieval-fewshot": ("agieval", TEXT, {"variant": "fewshot"}),
    "agieval-cot": ("agieval", TEXT, {"variant": "cot"}),
    "agieval-cot-zeroshot": ("agieval", TEXT, {"variant": "cot", "shots": 0}),
    "agieval-loglikelihood": ("agieval", TEXT, {"scoring": "loglikelihood"}),
    "agieval-fewshot-chat": ("agieval", CHAT, {"variant": "fewshot", "shots": 2, "fewshot_as_chat": True}),
    "agieval-zeroshot-chat": ("agieval", CHAT, {"variant": "zeroshot"}),
}


def render(case: str) -> dict[str, Any]:
    name, ctx, params = CASES[case]
    if name == "bbh":
        from tasks.bbh import bbh as factory

        params = {**params, "subtasks": BBH_SUBTASKS}
    else:
        from tasks.agieval import agieval as factory

        params = {**params, "subsets": AG_SUBSETS}
    task = factory(ctx, **params)
    firsts = {}
    for s in task.samples:
        firsts.setdefault(s.subtask, s)
    prompts = []
    for s in firsts.values():
        req = task.request(s)
        prompt = req.context if isinstance(req, ChoiceRequest) else req.prompt
        entry: dict[str, Any] = {"id": s.id, "prompt": _plain(prompt)}
        if isinstance(req, ChoiceRequest):
            entry["continuations"] = req.continuations
        prompts.append(entry)
    return {"template_hashes": task.template_hashes, "prompts": prompts}


def _plain(prompt: Any) -> Any:
    return [m.model_dump() for m in prompt] if isinstance(prompt, list) and prompt and isinstance(prompt[0], Message) else prompt


@pytest.mark.parametrize("case", sorted(CASES))
def test_snapshot(case: str) -> None:
    path = GOLDEN / f"{case}.json"
    got = render(case)
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with EVALSUITE_UPDATE_GOLDEN=1 and review the new file"
    want = json.loads(path.read_text(encoding="utf-8"))
    assert got["template_hashes"] == want["template_hashes"], "a template changed"
    for g, w in zip(got["prompts"], want["prompts"], strict=True):
        assert g == w, f"prompt of {w['id']} changed"
