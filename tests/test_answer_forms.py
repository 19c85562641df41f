"""Answers typed in full-width forms or with a Unicode minus sign, on real items.

Chinese input methods type "答案是（Ｂ）" and "Ｃ"; typeset or chat-rendered
arithmetic writes "−50" (U+2212).  Before, the first read as no answer (scored
0 for a right answer) and the second as 50 (a right answer scored 0, and
"−24" counted correct for a target of 24).
"""

from __future__ import annotations

import json

import pytest

import tasks.agieval as ag
from evalsuite.records import ModelOutput
from evalsuite.task import TaskContext
from tasks.bbh.extract import extract
from tests.conftest import DATA_DIR

CTX = TaskContext(data_dir=DATA_DIR, chat=False)


def _bbh_item(subtask: str, index: int) -> dict:
    return json.loads((DATA_DIR / "bbh" / f"{subtask}.json").read_text())["examples"][index]


@pytest.mark.parametrize("output", ["So the answer is −50.", "So the answer is ﹣50.", "So the answer is －５０."])
def test_bbh_unicode_minus_is_a_minus(output):
    row = _bbh_item("multistep_arithmetic_two", 2)
    assert row["target"] == "-50"
    assert extract(output, "multistep_arithmetic_two", row["input"], True) == "-50"
    positive = _bbh_item("multistep_arithmetic_two", 0)
    assert positive["target"] == "24"
    assert extract("So the answer is −24.", "multistep_arithmetic_two", positive["input"], True) == "-24"


def test_bbh_full_width_option_letter():
    row = _bbh_item("date_understanding", 0)
    letter = row["target"].strip("()")
    full = chr(ord(letter) + 0xFEE0)
    assert extract(f"So the answer is （{full}）.", "date_understanding", row["input"], True) == row["target"]


def _score(task, sid: str, text: str) -> float:
    sample = next(s for s in task.samples if s.id == sid)
    return next(iter(task.score([(sample, ModelOutput(completions=[text]))]))).metrics["acc"]


@pytest.fixture(scope="module")
def zh():
    return ag.agieval_zh(CTX, subsets=["logiqa-zh", "gaokao-physics", "gaokao-mathcloze"])


@pytest.mark.parametrize("text", ["答案是Ａ", "答案：（Ａ）", "答案是 Ａ。", "故选：Ａ"])
def test_agieval_full_width_letter_is_read(zh, text):
    sample = next(s for s in zh.samples if s.id == "logiqa-zh/0")
    assert sample.target == ["A"]
    assert _score(zh, "logiqa-zh/0", text) == 1.0
    assert _score(zh, "logiqa-zh/0", text.replace("Ａ", "Ｂ")) == 0.0


def test_agieval_full_width_multi_answer_set(zh):
    sample = next(s for s in zh.samples if s.id == "gaokao-physics/18")
    assert len(sample.target) > 1
    full = "".join(f"（{chr(ord(x) + 0xFEE0)}）" for x in sample.target)
    assert _score(zh, "gaokao-physics/18", "答案是" + full) == 1.0
    assert _score(zh, "gaokao-physics/18", "答案是" + full[: len(full) // 2]) == 0.0  # a subset is wrong


def test_agieval_cloze_full_width_digits(zh):
    sample = next(s for s in zh.samples if s.id == "gaokao-mathcloze/0")
    assert sample.target == "2"
    assert _score(zh, "gaokao-mathcloze/0", "答案：２") == 1.0
    assert _score(zh, "gaokao-mathcloze/0", "答案：−2") == 0.0


@pytest.mark.parametrize("output", ["So the answer is (A) (B).", "So the answer is (B) (A).", "So the answer is (B), (A)."])
def test_bbh_two_options_side_by_side_are_a_hedge(output):
    # "(A) (B)" names two options: reading its first would credit whichever option came first.
    row = _bbh_item("date_understanding", 0)
    assert row["target"] == "(B)"
    assert extract(output, "date_understanding", row["input"], True) is None


@pytest.mark.parametrize("text,acc", [("The answer is (a).", 1.0), ("答案是（ａ）", 1.0), ("The answer is (b).", 0.0),
                                      ("The answer is (e).", 0.0)])
def test_agieval_lower_case_letter_after_the_answer_marker(zh, text, acc):
    # logiqa-zh/0 has four options, gold A: "(e)" names no option and is not an answer.
    assert _score(zh, "logiqa-zh/0", text) == acc


@pytest.mark.parametrize("output,expected", [
    ("So the answer is 2,4.", None),  # not 24: a list or a decimal comma
    ("So the answer is 12,5.", None),
    ("So the answer is 8, 9.", None),  # two numbers: a hedge, like "8 or 9"
    ("So the answer is 24,000.", "24000"),
    ("So the answer is -1,234.", "-1234"),
    ("So the answer is 24, since 3 * 8 = 24.", "24"),
])
def test_bbh_commas_in_numbers(output, expected):
    row = _bbh_item("multistep_arithmetic_two", 0)
    assert row["target"] == "24"
    assert extract(output, "multistep_arithmetic_two", row["input"], True) == expected


def test_samples_from_elsewhere_are_cut_where_generation_stops(tmp_path):
    # A completion from another harness that ran on into the next few-shot question
    # was scored by that question's answer: the last "answer is" wins a retraction.
    from tests.conftest import evalsuite

    echo = "\n\nQ: Yesterday was April 30, 2021. What is the date today?\nA: Let's think step by step. So the answer is (A)."
    lines = [{"task_id": "date_understanding/0", "completion": " Tomorrow is 12/25/1937. So the answer is (B)." + echo}]
    path = tmp_path / "bbh.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    proc = evalsuite("score", "bbh", "--samples", str(path), "--data-dir", str(DATA_DIR))
    assert proc.returncode == 0, proc.stderr
    (verdict,) = [json.loads(line) for line in (tmp_path / "bbh.jsonl_results.jsonl").read_text().splitlines()]
    assert verdict["metrics"]["exact_match"] == 1.0

    zh = [{"task_id": "logiqa-zh/0", "completion": "答案：A\n问题：下一题……答案：B"}]
    path = tmp_path / "zh.jsonl"
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in zh))
    proc = evalsuite("score", "agieval_zh", "--samples", str(path), "--data-dir", str(DATA_DIR))
    assert proc.returncode == 0, proc.stderr
    (verdict,) = [json.loads(line) for line in (tmp_path / "zh.jsonl_results.jsonl").read_text().splitlines()]
    assert verdict["metrics"]["acc"] == 1.0


@pytest.mark.parametrize("text", ["The answer is (E), not (B).", "The answer is E. B is wrong.", "答案是E，不是B",
                                  "答案是AE，不是B", "答案：（Ｅ）（Ｂ）"])
def test_agieval_a_letter_beyond_the_options_is_no_answer_not_the_next_letter(zh, text):
    # logiqa-zh/1 has four options (A-D): "E" names none of them; reading past it to
    # the next letter credited "(B)", a letter the answer had just ruled out.
    sample = next(s for s in zh.samples if s.id == "logiqa-zh/1")
    assert len(sample.input["options"]) == 4
    gold = sample.target[0]
    assert _score(zh, "logiqa-zh/1", text.replace("B", gold).replace("Ｂ", chr(ord(gold) + 0xFEE0))) == 0.0


def test_agieval_a_capital_inside_the_reasoning_is_not_an_answer(zh):
    # "F=ma" on the answer line is physics, not option F: the option named after it counts.
    sample = next(s for s in zh.samples if s.id == "logiqa-zh/1")
    assert _score(zh, "logiqa-zh/1", f"答案是：由F=ma可知，选{sample.target[0]}") == 1.0


@pytest.mark.parametrize("output", ["So the answer is (G), not (B).", "So the answer is G. (B) is wrong.",
                                    "So the answer is (G) (B).", "So the answer is (g)."])
def test_bbh_a_letter_beyond_the_options_is_no_answer_not_the_next_letter(output):
    from tasks.bbh.extract import read

    row = _bbh_item("date_understanding", 0)  # options (A)-(F), gold (B)
    assert row["target"] == "(B)" and "(G)" not in row["input"]
    reading = read(output, "date_understanding", row["input"], True)
    assert reading.answer is None and reading.detail == "answered (G), which is not an option"


def test_scoring_votes_over_different_numbers_of_samples_warns(tmp_path):
    from tests.conftest import evalsuite

    lines = [{"task_id": "navigate/0", "completion": f"So the answer is {a}."} for a in ("No", "Yes", "Yes")]
    lines.append({"task_id": "navigate/1", "completion": "So the answer is Yes."})
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    proc = evalsuite("score", "bbh", "--samples", str(path), "--data-dir", str(DATA_DIR))
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "problems have different numbers of samples (1 samples: 1 problems, 3 samples: 1 problems)" in text
    same = tmp_path / "same.jsonl"
    same.write_text("".join(json.dumps(line) + "\n" for line in lines[:3]))
    assert "different numbers of samples" not in evalsuite("score", "bbh", "--samples", str(same),
                                                           "--data-dir", str(DATA_DIR)).stdout


def test_bbh_an_option_whose_text_is_a_letter_is_still_that_option():
    # movie_recommendation/144 has an option titled "I" (the upstream split of "I, Robot"):
    # "I." is its text, not the letter (I), which the question has no option for.
    from tasks.bbh.extract import read

    row = _bbh_item("movie_recommendation", 144)
    assert "(A) I\n" in row["input"]
    assert read("So the answer is I.", "movie_recommendation", row["input"], True).answer == "(A)"


@pytest.mark.parametrize("token", ["</s>", "<|im_end|>", "<|eot_id|>"])
def test_bbh_end_of_turn_tokens_left_in_a_completion(tmp_path, token):
    # dyck_languages/0 (target "] ]"): the "<" of "</s>" was read as a bracket.
    from tests.conftest import evalsuite

    lines = [{"task_id": "dyck_languages/0", "completion": f"So the answer is ] ]{token}"},
             {"task_id": "date_understanding/0", "completion": f"So the answer is B{token}\nQ: ..."}]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    proc = evalsuite("score", "bbh", "--samples", str(path), "--data-dir", str(DATA_DIR))
    assert proc.returncode == 0, proc.stderr
    verdicts = [json.loads(line) for line in (tmp_path / "s.jsonl_results.jsonl").read_text().splitlines()]
    assert [v["metrics"]["exact_match"] for v in verdicts] == [1.0, 1.0]
