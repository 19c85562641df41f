"""Answer extraction on the forms anchor harnesses score as zero, and on real model outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.bbh.extract import extract, is_correct

Q_ABC = "Which is it?\nOptions:\n(A) The Front Page\n(B) Maelstrom\n(C) The Lion King"


@pytest.mark.parametrize("output,expected", [
    ("Step one. So the answer is (B).", "(B)"),
    ("(B)", "(B)"),
    ("B", "(B)"),
    ("B.", "(B)"),
    (" (B)", "(B)"),
    ("So the answer is **(C)**.", "(C)"),
    ("**Answer:** C", "(C)"),
    ("The answer is: (A) The Front Page", "(A)"),
    ("So the answer is The Lion King.", "(C)"),
    ("First (A) looks wrong; (C) also wrong. So the answer is (B).", "(B)"),
    ("I think (A) is wrong but (C) fits best", "(C)"),  # CoT without the phrase: last letter
    ("So the answer is (Z).", None),  # not an option
])
def test_letter_choices(output, expected):
    assert extract(output, "movie_recommendation", Q_ABC, chain_of_thought=True) == expected


@pytest.mark.parametrize("subtask,output,expected", [
    ("boolean_expressions", "So the answer is False.", "False"),
    ("boolean_expressions", "false", "False"),
    ("boolean_expressions", "So the answer is **True**", "True"),
    ("causal_judgement", "yes.", "Yes"),
    ("causal_judgement", "So the answer is No.", "No"),
    ("sports_understanding", "So the answer is Yes.", "yes"),
    ("formal_fallacies", "So the answer is invalid.", "invalid"),
    ("formal_fallacies", "Valid", "valid"),
    ("web_of_lies", "Bob lies. So Elanor tells the truth? Yes, so the answer is Yes", "Yes"),
])
def test_binary_words_any_case_any_punctuation(subtask, output, expected):
    assert extract(output, subtask, "", chain_of_thought=False) == expected


@pytest.mark.parametrize("subtask,output,expected", [
    ("multistep_arithmetic_two", "So the answer is 24.", "24"),
    ("multistep_arithmetic_two", "So the answer is -39960", "-39960"),
    ("multistep_arithmetic_two", "= 1,234. So the answer is 1,234.", "1234"),
    ("object_counting", "So the answer is 8.", "8"),
    ("object_counting", "So the answer is eight.", "8"),
    ("object_counting", "I have 3 + 5 = 8 instruments", "8"),
])
def test_integers(subtask, output, expected):
    assert extract(output, subtask, "", chain_of_thought=True) == expected


def test_free_text_subtasks():
    assert extract("So the answer is ] ) >.", "dyck_languages", "", True) == "] ) >"
    assert is_correct("So the answer is ])>.", extract("So the answer is ])>.", "dyck_languages", "", True), "] ) >", "dyck_languages")
    out = "So the answer is syndrome therefrom."
    assert is_correct(out, extract(out, "word_sorting", "", True), "syndrome therefrom", "word_sorting")
    out = "So the answer is Syndrome, therefrom"
    assert is_correct(out, extract(out, "word_sorting", "", True), "syndrome therefrom", "word_sorting")
    out = "So the answer is therefrom syndrome."
    assert not is_correct(out, extract(out, "word_sorting", "", True), "syndrome therefrom", "word_sorting")


REAL = Path(__file__).parent / "data" / "bbh_real_outputs.jsonl"


@pytest.mark.parametrize("row", [json.loads(line) for line in REAL.read_text().splitlines()], ids=lambda r: r["id"])
def test_real_outputs_of_smollm2(row):
    """Outputs SmolLM2-135M-Instruct produced (evalsuite run, chat template on), answers checked by hand."""
    got = extract(row["output"], row["subtask"], row["input"], chain_of_thought=row["cot"])
    assert got == row["expected"]
