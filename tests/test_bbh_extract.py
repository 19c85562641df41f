"""Answer extraction on the forms anchor harnesses score as zero, and on real model outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.bbh.extract import extract, is_correct, read

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


# -- issue 8 §3: every fault kind, on real items of the mirror --------------------------
# Each case: (subtask, index into <subtask>.json, model output, the right reading).
# A reading of None means "no answer": nothing found, or a hedge across options.


def _item(data_dir: Path, subtask: str, index: int) -> dict:
    return json.loads((data_dir / "bbh" / f"{subtask}.json").read_text())["examples"][index]


def _check(data_dir, subtask, index, output, expected, hedged=False):
    row = _item(data_dir, subtask, index)
    reading = read(output, subtask, row["input"], chain_of_thought=True)
    assert reading.answer == expected
    assert bool(reading.hedged) == hedged
    return row, reading


ARTICLE_A = [
    # The example: option (D) is "A Plasticine Crow"; the target is (C).
    ("movie_recommendation", 13, "... So the answer is A Plasticine Crow.", "(D)"),
    ("movie_recommendation", 13, "So the answer is a plasticine crow", "(D)"),
    ("movie_recommendation", 13, "So the answer is 'A Plasticine Crow'.", "(D)"),
    ("movie_recommendation", 13, "**Answer:** A Plasticine Crow", "(D)"),
    # Target (A) "Batman"; the model chose (C) "A Tale of Two Cities": not (A).
    ("movie_recommendation", 37, "So the answer is A Tale of Two Cities.", "(C)"),
    ("movie_recommendation", 37, "So the answer is A Tale of Two Cities (C).", "(C)"),
    # The text of option (A) itself still reads as (A).
    ("movie_recommendation", 8, "So the answer is A Hard Day's Night.", "(A)"),
    # snarks: both options open with the article; the model chose the other option.
    ("snarks", 67, "So the answer is A wave of hypothermia and drownings will be a terrible way to start the year.", "(B)"),
    ("snarks", 100, "So the answer is A civil war with at least 500,000 deaths is detrimental to a healthy democracy.", "(B)"),
    ("snarks", 156, "So the answer is A dozen or so people from a personal anecdote is really a good sample size "
                    "to represent all 320 million people in America.", "(A)"),
    # An article or a pronoun before the letter the answer names.
    ("date_understanding", 0, "So the answer is A careful count gives (B).", "(B)"),
    ("date_understanding", 0, "So the answer is I think (B).", "(B)"),
    # ...but a bare letter is still a letter.
    ("date_understanding", 0, "So the answer is A.", "(A)"),
    ("date_understanding", 0, "So the answer is A because the date moves one day.", "(A)"),
    ("date_understanding", 0, "So the answer is A) 12/11/1937, one day after.", "(A)"),
]


@pytest.mark.parametrize("subtask,index,output,expected", ARTICLE_A)
def test_option_text_wins_over_the_article_a(data_dir, subtask, index, output, expected):
    _check(data_dir, subtask, index, output, expected)


def test_snarks_item_is_no_longer_credited_for_the_other_option(data_dir):
    """snarks/67: target (A); the output names option (B)'s text, so it is wrong."""
    from evalsuite.records import ModelOutput
    from evalsuite.task import TaskContext
    from tasks.bbh import bbh

    task = bbh(TaskContext(data_dir=data_dir), subtasks=["snarks"])
    sample = task.samples[67]
    out = "So the answer is A wave of hypothermia and drownings will be a terrible way to start the year."
    score = next(task.score([(sample, ModelOutput(completions=[out]))]))
    assert sample.target == "(A)" and score.answer == "(B)" and score.metrics["exact_match"] == 0.0


LAST_PHRASE = [
    ("snarks", 67, "Let me see: the answer is (A), but (A) is sincere. So the answer is (B).", "(B)"),
    ("web_of_lies", 4, "Hmm, the answer is No, wait, Vina lies so Raymond tells the truth; the answer is Yes.", "Yes"),
    ("object_counting", 0, "The answer is 7, no: I missed the trumpet, so the answer is 8.", "8"),
    ("multistep_arithmetic_two", 0, "First the answer is 46, then subtracting 22 the final answer is 24.", "24"),
    # "the answer is not X" is no answer phrase.
    ("date_understanding", 0, "So the answer is (B); the answer is not (A).", "(B)"),
]


@pytest.mark.parametrize("subtask,index,output,expected", LAST_PHRASE)
def test_the_last_answer_phrase_counts_even_on_one_line(data_dir, subtask, index, output, expected):
    _check(data_dir, subtask, index, output, expected)


HEDGES = [
    # The target is named first in every hedge: it must not be credited.
    ("snarks", 0, "So the answer is either (B) or (A)."),  # target (B)
    ("date_understanding", 1, "So the answer is (A) or (C)."),  # target (A)
    ("date_understanding", 1, "So the answer is (A)/(C)."),
    ("date_understanding", 1, "So the answer is (A) or maybe (C)."),
    ("date_understanding", 1, "So the answer is (A) and (C)."),
    ("date_understanding", 1, "So the answer is A or C."),
    ("date_understanding", 1, "So the answer is (A), (C)."),
    ("date_understanding", 1, "So the answer is (A) or maybe even (C)."),
    ("date_understanding", 1, "The options (A) or (C) both fit."),  # no phrase: the last sentence hedges
    ("boolean_expressions", 1, "So the answer is either True or False."),  # target True
    ("causal_judgement", 1, "So the answer is Yes or No, it depends."),
    ("object_counting", 0, "So the answer is 8 or 9."),  # target 8
    ("date_understanding", 1, "So the answer is (A) & (C)."),
    ("date_understanding", 1, "So the answer is (A) vs. (C)."),
    ("causal_judgement", 1, "So the answer is Yes & No."),
]


@pytest.mark.parametrize("subtask,index,output", HEDGES)
def test_a_hedge_across_options_is_not_an_answer(data_dir, subtask, index, output):
    row, reading = _check(data_dir, subtask, index, output, None, hedged=True)
    assert reading.detail.startswith("hedged between")
    assert not is_correct(output, reading.answer, row["target"], subtask)


@pytest.mark.parametrize("output", ["So the answer is (B), not (A).", "So the answer is (B) and not (A).",
                                    "So the answer is (B) rather than (A).", "So the answer is (B) because (A) skips a day.",
                                    "So the answer is never (A); it is (B).", "So the answer is (B) and never (A)."])
def test_a_ruled_out_option_is_not_a_hedge(data_dir, output):
    _check(data_dir, "date_understanding", 0, output, "(B)")


def test_two_options_with_the_same_text_cannot_be_told_apart(data_dir):
    """snarks/86 upstream has the same text in (A) and (B): naming it answers neither."""
    row = _item(data_dir, "snarks", 86)
    text = row["input"].split("\n(A) ")[1].split("\n")[0]
    _check(data_dir, "snarks", 86, f"So the answer is {text}.", None)


INTEGERS = [
    ("object_counting", 0, "So the answer is 8 (after checking the 2 parts again).", "8"),
    ("object_counting", 1, "So the answer is 15 (I counted 3 kinds of fruit twice).", "15"),
    ("object_counting", 0, "So the answer is 3 + 5 = 8.", "8"),
    ("object_counting", 0, "So the answer is eight (2 + 6).", "8"),
    ("multistep_arithmetic_two", 0, "So the answer is 24 (46 - 22, checked in 2 steps).", "24"),
    ("multistep_arithmetic_two", 3, "So the answer is -11520, since 2 of the 3 factors are negative.", "-11520"),
    ("multistep_arithmetic_two", 0, "So the answer is ((-1 + 2 + 9 * 5) - (-2 + -4 + -4 * -7)) = 24.", "24"),
    ("multistep_arithmetic_two", 0, "So the answer is 24 = 46 - 22.", "24"),
    ("object_counting", 3, "So the answer is fourteen (14).", "14"),
    ("multistep_arithmetic_two", 0, "So the answer is twenty-four.", "24"),  # was 20
    ("multistep_arithmetic_two", 0, "So the answer is Twenty four.", "24"),
    ("object_counting", 0, "So the answer is eight.", "8"),
]


@pytest.mark.parametrize("subtask,index,output,expected", INTEGERS)
def test_an_integer_answer_is_the_number_the_span_opens_with(data_dir, subtask, index, output, expected):
    row, reading = _check(data_dir, subtask, index, output, expected)
    assert is_correct(output, reading.answer, row["target"], subtask)


@pytest.mark.parametrize("layout", [
    "So the answer is:\n{lines}",
    "So the answer is:\n\n{bullets}\n\n(in alphabetical order)",
    "So the answer is:\n{numbered}",
    "So the answer is:\n{stars} (in alphabetical order)",
    "{numbered}",  # an answer-only output that is just the list
    "Step by step, by first letter.\nSorted list:\n{bullets}",  # a chain of thought ending on the list
    "So the answer is {words} (in alphabetical order).",
    "So the answer is {words}. These words are now in alphabetical order.",  # a sentence after it
    "So the answer is {commas}. Done!",
    "So the answer is {python}.",  # a Python list of strings
    "So the answer is: {inline}",  # an inline numbered list
])
@pytest.mark.parametrize("index", [2, 3])  # word_sorting/2 starts with "artillery" (the example)
def test_word_sorting_reads_the_whole_list(data_dir, index, layout):
    row = _item(data_dir, "word_sorting", index)
    words = row["target"].split()
    output = layout.format(
        lines="\n".join(words), bullets="\n".join(f"- {w}" for w in words),
        numbered="\n".join(f"{i}. {w}" for i, w in enumerate(words, 1)),
        stars="\n".join(f"* {w}" for w in words), words=" ".join(words), commas=", ".join(words),
        python=repr(words), inline=" ".join(f"{i}) {w}" for i, w in enumerate(words, 1)),
    )
    reading = read(output, "word_sorting", row["input"], chain_of_thought=True)
    assert reading.answer == row["target"]
    assert is_correct(output, reading.answer, row["target"], "word_sorting")


def test_word_sorting_list_with_a_wrong_order_is_read_whole_and_wrong(data_dir):
    row = _item(data_dir, "word_sorting", 2)
    words = row["target"].split()
    output = "So the answer is:\n" + "\n".join(reversed(words))
    answer = extract(output, "word_sorting", row["input"], chain_of_thought=True)
    assert answer == " ".join(reversed(words)) and not is_correct(output, answer, row["target"], "word_sorting")


PHRASED = [
    ("date_understanding", 0, "So the answer is (b).", "(B)"),
    ("date_understanding", 0, "(b)", "(B)"),
    ("date_understanding", 0, "b", "(B)"),
    ("date_understanding", 3, "So the answer is (e)", "(E)"),
    ("sports_understanding", 0, "So the answer is not plausible.", "no"),
    ("sports_understanding", 0, "So the answer is implausible.", "no"),
    ("sports_understanding", 0, "So the answer is: it isn't plausible.", "no"),
    ("sports_understanding", 0, "So the sentence is not plausible.", "no"),  # no phrase: last sentence
    ("sports_understanding", 1, "So the answer is plausible.", "yes"),
    ("web_of_lies", 0, "So the answer is Raymond does not tell the truth.", "No"),
    ("web_of_lies", 0, "So the answer is: he doesn't tell the truth.", "No"),
    ("web_of_lies", 0, "So the answer is Raymond lies.", "No"),
    ("web_of_lies", 4, "So the answer is Raymond tells the truth.", "Yes"),
    ("web_of_lies", 4, "Vina lies. So Raymond tells the truth.", "Yes"),  # no phrase: last sentence
    ("web_of_lies", 4, "So the answer is Raymond does not lie.", "Yes"),
    ("web_of_lies", 4, "So the answer is Raymond never lies.", "Yes"),
    ("web_of_lies", 0, "So the answer is Raymond is lying.", "No"),
    ("navigate", 0, "So the answer is we do not return to the starting point.", "No"),
    ("navigate", 3, "So the answer is you return to the starting point.", "Yes"),
    ("formal_fallacies", 0, "So the answer is not valid.", "invalid"),
    # the restated expression's result
    ("boolean_expressions", 0, "So the answer is not ( True ) and ( True ) = False.", "False"),
]


# A negation in front of a yes/no-like word turns it over; reading the word alone
# credits the opposite answer ("Elanor is not a liar" answered No to "Does Elanor
# tell the truth?").  Each row's expected answer is the one the output gives.
NEGATED = [
    ("web_of_lies", 4, "So the answer is Elanor is not a liar.", "Yes"),
    ("web_of_lies", 4, "So the answer is: Elanor is not lying.", "Yes"),
    ("web_of_lies", 0, "So the answer is: Elanor isn't telling the truth.", "No"),
    ("sports_understanding", 0, "So the answer is: not at all plausible.", "no"),
    ("sports_understanding", 0, "So the answer is: the sentence is hardly plausible.", "no"),
    ("sports_understanding", 1, "So the answer is: not implausible.", "yes"),
    ("formal_fallacies", 0, "So the answer is: the argument isn't valid.", "invalid"),
    ("formal_fallacies", 0, "So the answer is: the argument is never valid.", "invalid"),
    ("formal_fallacies", 1, "So the answer is: it is not invalid.", "valid"),
    ("boolean_expressions", 0, "So the answer is not True.", "False"),
    ("boolean_expressions", 0, "So the answer is: NOT True", "False"),
    ("boolean_expressions", 1, "So the answer is: not False.", "True"),
    ("causal_judgement", 0, "So the answer is: not yes.", "No"),
    ("navigate", 0, "So the answer is: we do not end up at the starting point.", "No"),
    ("navigate", 3, "So the answer is: we end up back at the start.", "Yes"),
    ("web_of_lies", 4, "So the answer is: Elanor cannot be lying.", "Yes"),
    ("sports_understanding", 0, "So the answer is: it cannot be plausible.", "no"),
]


BOXED = [
    ("date_understanding", 0, "Counting forward one day.\nThus, the final answer is $\\boxed{B}$.", "(B)"),
    ("date_understanding", 0, "Counting forward one day, we get $\\boxed{(B)}$ \\text{as expected}", "(B)"),
    ("multistep_arithmetic_two", 0, "46 - 22 = 24, so \\boxed{24}", "24"),
    ("boolean_expressions", 0, "The answer is $\\boxed{\\text{False}}$", "False"),
]


@pytest.mark.parametrize("subtask,index,output,expected", BOXED)
def test_a_boxed_final_answer(data_dir, subtask, index, output, expected):
    _check(data_dir, subtask, index, output, expected)


@pytest.mark.parametrize("subtask,index,output,expected", PHRASED + NEGATED)
def test_lowercase_letters_and_answers_without_yes_no(data_dir, subtask, index, output, expected):
    row, reading = _check(data_dir, subtask, index, output, expected)
    assert is_correct(output, reading.answer, row["target"], subtask) == (expected == row["target"])


def test_a_yes_no_phrase_inside_a_question_is_no_answer():
    out = "To determine whether the sentence is plausible, we need to analyze it."
    assert extract(out, "sports_understanding", "", chain_of_thought=False) is None


DYCK = [
    (0, "So the answer is ] ] (closing the two open brackets)."),
    (1, "So the answer is ] ] > (each one closes the innermost open bracket)."),
    (3, "So the answer is ) > (the parentheses (and angle brackets) are now balanced)."),
    (5, "So the answer is ] ), which closes everything."),
    (0, "So the answer is ], ]."),  # brackets listed with commas (was "]")
    (1, "So the answer is: ], ], >"),
]


@pytest.mark.parametrize("index,output", DYCK)
def test_dyck_answer_ignores_a_parenthesised_note(data_dir, index, output):
    row = _item(data_dir, "dyck_languages", index)
    answer = extract(output, "dyck_languages", row["input"], chain_of_thought=True)
    assert answer == row["target"] and is_correct(output, answer, row["target"], "dyck_languages")


def test_fault_kinds_through_evalsuite_run(data_dir, tmp_path, cli):
    """The same readings through the public entry point: `evalsuite run --model mock -M replies=FILE`."""
    cases = [  # (subtask, index, reply, answer, exact_match)
        ("movie_recommendation", 13, "... So the answer is A Plasticine Crow.", "(D)", 0.0),
        ("movie_recommendation", 37, "So the answer is A Tale of Two Cities.", "(C)", 0.0),
        ("snarks", 67, "So the answer is A wave of hypothermia and drownings will be a terrible way to start "
                       "the year.", "(B)", 0.0),
        ("snarks", 0, "So the answer is either (B) or (A).", None, 0.0),
        ("date_understanding", 1, "So the answer is (A) or (C).", None, 0.0),
        ("date_understanding", 0, "the answer is (A), but (A) skips a day. So the answer is (B).", "(B)", 1.0),
        ("date_understanding", 3, "So the answer is (e)", "(E)", 1.0),
        ("object_counting", 0, "So the answer is 8 (after checking the 2 parts again).", "8", 1.0),
        ("object_counting", 1, "So the answer is 15 or 16.", None, 0.0),
        ("sports_understanding", 0, "So the answer is not plausible.", "no", 1.0),
        ("web_of_lies", 0, "So the answer is Raymond does not tell the truth.", "No", 1.0),
        ("dyck_languages", 3, "So the answer is ) > (the parentheses (and angle brackets) are now balanced).", ") >", 1.0),
    ]
    words = _item(data_dir, "word_sorting", 2)["target"].split()
    cases.append(("word_sorting", 2, "So the answer is:\n" + "\n".join(f"{i}. {w}" for i, w in enumerate(words, 1))
                  + "\n(in alphabetical order)", " ".join(words), 1.0))
    replies = {f"Q: {_item(data_dir, s, i)['input']}\nA:": reply for s, i, reply, _, _ in cases}
    (tmp_path / "replies.json").write_text(json.dumps(replies))
    subtasks = sorted({s for s, *_ in cases})
    out = cli("run", "--model", "mock", "-M", f"replies={tmp_path / 'replies.json'}", "--tasks", "bbh",
              "-T", "subtasks=" + ",".join(subtasks), "--limit", "68", "--data-dir", str(data_dir), "-o", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    (run,) = (tmp_path / "runs").iterdir()
    records = {r["sample_id"]: r for r in map(json.loads, (run / "samples.jsonl").read_text().splitlines())}
    for subtask, index, reply, answer, em in cases:
        score = records[f"{subtask}/{index}"]["score"]
        assert records[f"{subtask}/{index}"]["output"]["completions"] == [reply]
        assert (score["answer"], score["metrics"]["exact_match"]) == (answer, em), (subtask, index)
        assert score["metrics"]["answer_found"] == float(answer is not None)
        if answer is None:
            assert score["detail"].startswith("hedged between")
