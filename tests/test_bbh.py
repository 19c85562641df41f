"""BIG-Bench Hard: data, prompts in every mode, and scoring on the real files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tasks.bbh
from evalsuite.templates import sha256_text

from evalsuite.records import Message, ModelOutput
from evalsuite.task import TaskContext
from tasks.bbh import SUBTASKS, bbh

ROOT = Path(__file__).resolve().parents[1]

SIZES = {"causal_judgement": 187, "penguins_in_a_table": 146, "snarks": 178}


@pytest.fixture(scope="module")
def cot(data_dir):
    return bbh(TaskContext(data_dir=data_dir))


def test_all_27_subtasks_and_6511_examples(cot):
    assert len(SUBTASKS) == 27
    assert len(cot.samples) == 6511
    counts = {}
    for s in cot.samples:
        counts[s.subtask] = counts.get(s.subtask, 0) + 1
    assert counts == {name: SIZES.get(name, 250) for name in SUBTASKS}
    assert len({s.id for s in cot.samples}) == 6511
    assert cot.dataset.n_rows == 6511 and len(cot.dataset.content_hash) == 64


def test_cot_prompt_is_the_official_prompt(cot, data_dir):
    """Official construction: the cot-prompts file without its canary, then the question."""
    for sample in (cot.samples[0], cot.samples[3000], cot.samples[-1]):
        official = (data_dir / "bbh" / "cot-prompts" / f"{sample.subtask}.txt").read_text().split("\n-----\n", 1)[1]
        expected = f"{official}\n\nQ: {sample.input['input']}\nA: Let's think step by step."
        assert cot.request(sample).prompt == expected


def test_answer_only_shots_keep_only_the_final_answer(data_dir):
    task = bbh(TaskContext(data_dir=data_dir), variant="fewshot", subtasks=["date_understanding"])
    prompt = task.request(task.samples[0]).prompt
    assert prompt.startswith("Infer the date from context.\n\nQ: ")
    assert prompt.count("\nA: (") == 3 and "Let's think" not in prompt
    assert prompt.endswith(f"Q: {task.samples[0].input['input']}\nA: ")
    assert task.generation.max_new_tokens < 512


def test_zero_shot_has_no_exemplars(data_dir):
    task = bbh(TaskContext(data_dir=data_dir), variant="zeroshot", subtasks=["navigate"])
    prompt = task.request(task.samples[0]).prompt
    assert prompt.count("Q: ") == 1 and prompt.startswith("Given a series of navigation instructions")


def test_chat_single_turn_and_multi_turn(data_dir):
    ctx = TaskContext(data_dir=data_dir, chat=True, system_message="You are a careful reasoner.")
    single = bbh(ctx, subtasks=["snarks"])
    msgs = single.request(single.samples[0]).prompt
    assert [m.role for m in msgs] == ["system", "user", "assistant"]
    assert msgs[0].content == "You are a careful reasoner."
    assert msgs[1].content.endswith(f"Q: {single.samples[0].input['input']}")
    assert msgs[2] == Message(role="assistant", content="A: Let's think step by step.")

    multi = bbh(ctx, subtasks=["snarks"], fewshot_as_chat=True)
    msgs = multi.request(multi.samples[0]).prompt
    assert [m.role for m in msgs] == ["system"] + ["user", "assistant"] * 4
    assert msgs[1].content.startswith("Determine which of two sentences is sarcastic.\n\n")
    assert "\n\nQ: " in msgs[1].content and "\nA:" not in msgs[1].content
    assert msgs[2].content.startswith("A: Let's think step by step.") and "So the answer is" in msgs[2].content
    assert msgs[-2] == Message(role="user", content=f"Q: {multi.samples[0].input['input']}")
    assert msgs[-1] == Message(role="assistant", content="A: Let's think step by step.")


def test_template_and_prompt_hashes_in_provenance(cot, data_dir):
    prompts = {f"cot-prompts/{name}.txt" for name in SUBTASKS}
    assert set(cot.template_hashes) == {"answer_prefix.j2", "question.j2", "shot_answer.j2"} | prompts
    text = (data_dir / "bbh" / "cot-prompts" / "snarks.txt").read_text(encoding="utf-8")
    assert cot.template_hashes["cot-prompts/snarks.txt"] == sha256_text(text)


def test_shipped_prompts_are_the_official_files(data_dir):
    """The 27 package-data prompt files (and the MIT LICENSE) equal the mirror's, byte for byte."""
    shipped = Path(tasks.bbh.__file__).parent / "cot-prompts"
    assert sorted(p.stem for p in shipped.glob("*.txt")) == sorted(SUBTASKS)
    for name in SUBTASKS:
        assert (shipped / f"{name}.txt").read_bytes() == (data_dir / "bbh" / "cot-prompts" / f"{name}.txt").read_bytes()
    assert (shipped / "LICENSE").read_bytes() == (data_dir / "bbh" / "LICENSE").read_bytes()


def test_the_wheel_ships_the_prompts(tmp_path):
    """pyproject's package-data puts the prompt files and their LICENSE into the built wheel."""
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("evalsuite-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"tasks/bbh/cot-prompts/{name}.txt" for name in SUBTASKS} | {"tasks/bbh/cot-prompts/LICENSE"} <= names


def test_stop_sequences_do_not_cut_words_starting_with_q(cot):
    assert "Q" not in cot.generation.stop and all(s.endswith("Q:") for s in cot.generation.stop)


def _score(task, sample, text):
    return next(task.score([(sample, ModelOutput(completions=[text]))]))


def test_scoring_counts_the_non_letter_upstream_targets(data_dir):
    task = bbh(TaskContext(data_dir=data_dir), subtasks=["movie_recommendation"])
    (odd,) = [s for s in task.samples if s.target == "Monsters, Inc"]
    assert _score(task, odd, "... So the answer is Monsters, Inc.").metrics["exact_match"] == 1.0
    assert _score(task, odd, "So the answer is (A).").metrics["exact_match"] == 0.0


def test_score_record_has_answer_and_flags_missing_answers(data_dir):
    task = bbh(TaskContext(data_dir=data_dir), subtasks=["web_of_lies"])
    sample = task.samples[0]
    good = _score(task, sample, f"Let's see. So the answer is **{sample.target}**.")
    assert good.answer == sample.target and good.metrics == {"exact_match": 1.0, "answer_found": 1.0}
    none = _score(task, sample, "I am not sure.")
    assert none.answer is None and none.metrics["answer_found"] == 0.0 and "no answer" in none.detail
