"""MT-Bench files: questions, GPT-4 references, model answers and the 8 judge prompts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from evalsuite.data import DataSource
from evalsuite.errors import UserError
from evalsuite.records import Message, ScoreStatus
from evalsuite.rundir import RunDir
from evalsuite.templates import sha256_text

CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
# FastChat's answer temperatures per category (greedy when 0).
TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}
NEED_REF_CATS = ("math", "reasoning", "coding")  # judged with GPT-4's reference answers
ANSWER_FILES = ("alpaca-13b", "claude-v1", "gpt-3.5-turbo", "gpt-4", "llama-13b", "vicuna-13b-v1.2")


@dataclass(frozen=True)
class Question:
    id: int | str
    category: str
    turns: tuple[str, ...]  # MT-Bench: always 2


@dataclass(frozen=True)
class JudgePrompt:
    """One of FastChat's judge prompts: a system prompt and a ``str.format`` template."""

    name: str
    system: str
    template: str

    def render(self, **fields: str) -> tuple[Message, ...]:
        return (Message(role="system", content=self.system), Message(role="user", content=self.template.format(**fields)))

    @property
    def hash(self) -> str:
        return sha256_text(json.dumps([self.system, self.template]))


def questions(source: DataSource) -> list[Question]:
    rows = source.json_rows("question.jsonl", required=("question_id", "category", "turns"))
    out = []
    for r in rows:
        if r["category"] not in CATEGORIES or len(r["turns"]) != 2:
            raise UserError(f"{source.root}/question.jsonl: question {r['question_id']} is not a 2-turn question "
                            f"of a known category")
        out.append(Question(int(r["question_id"]), r["category"], (r["turns"][0], r["turns"][1])))
    return out


REFERENCES = "reference_answer/gpt-4.jsonl"


def answers(source: DataSource, path: str) -> dict[int, tuple[str, str]]:
    """Two turns per question id from a FastChat answer file (``choices[0].turns``):
    ``REFERENCES`` or ``model_answer/<model>.jsonl``."""
    rows = source.json_rows(path, required=("question_id", "choices"))
    return {int(r["question_id"]): tuple(r["choices"][0]["turns"][:2]) for r in rows}  # type: ignore[misc]


def judge_prompts(source: DataSource) -> dict[str, JudgePrompt]:
    rows = source.json_rows("judge_prompts.jsonl", required=("name", "system_prompt", "prompt_template"))
    return {r["name"]: JudgePrompt(r["name"], r["system_prompt"], r["prompt_template"]) for r in rows}


def run_answers(path: Path) -> tuple[str, dict[int, tuple[str, str]], str]:
    """(model id, answers by question id, content hash) of an mtbench run directory."""
    rundir = RunDir.existing(path)
    model = rundir.provenance().model.id
    found: dict[int, tuple[str, str]] = {}
    for record in rundir.samples():
        if record.task != "mtbench" or record.output is None or record.score.status is ScoreStatus.GENERATION_ERROR:
            continue
        turns = [p.completions[0] for p in record.output.parts]
        if len(turns) == 2:
            found[int(record.sample_id)] = (turns[0], turns[1])
    if not found:
        raise UserError(f"{path}: no generated mtbench answers to compare against")
    digest = hashlib.sha256(json.dumps(sorted(found.items())).encode()).hexdigest()
    return model, found, digest
