"""Every disagreement with the references is one where the reference is wrong.

tools/compare_references.py scores the same outputs (built from every real BBH and
AGIEval item, one per answer form, each with its true verdict known by construction)
with evalsuite, lm-eval 0.4.13 (bbh_cot_fewshot's regex + take_first + exact_match;
agieval math's is_equiv) and upstream AGIEval (post_process + evaluate_single_sample).
It keeps three examples of each kind of disagreement in
tests/data/reference_disagreements.jsonl, with the reference's reading and verdict;
here each is replayed through evalsuite's scorer, which must give the true verdict.

Measured on the full corpus (223,735 outputs), evalsuite is right on all of them; the
references disagree as WHY says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.records import ModelOutput
from evalsuite.task import TaskContext

from tests.conftest import DATA_DIR

ROWS = [json.loads(line) for line in (Path(__file__).parent / "data" / "reference_disagreements.jsonl").read_text(
    encoding="utf-8").splitlines()]

# Why the reference is wrong, per (reference, answer form); the readings are in the JSONL.
MULTI_LABEL = "gaokao-mathqa's multi-letter label ('AD') is compared as a string with a one-letter reading"
LAST_NUMBER = "a cloze answer without '$' or '=' shrinks to its last unsigned number ('(3,4]' -> '4')"
WHY = {
    # lm-eval 0.4.13, bbh_cot_fewshot: regex (?<=the answer is )(.*)(?=.), take_first, exact_match
    ("lm-eval", "no_final_period"): "(?=.) drops the last character even when it is no period: 'Fals', '(B'; "
                                    "'] ] )' -> '] ]' credits a wrong dyck answer",
    ("lm-eval", "bold"): "'**(B)**' is compared verbatim",
    ("lm-eval", "capital_The"): "the regex is case-sensitive: 'The answer is' is never found ('[invalid]')",
    ("lm-eval", "colon"): "'the answer is: (B)' does not match 'the answer is ' ('[invalid]')",
    ("lm-eval", "next_line"): "'the answer is:' ends its line ('[invalid]')",
    ("lm-eval", "two_phrases_one_line"): "take_first + greedy (.*): the retracted first answer up to the line's end",
    ("lm-eval", "letter_and_text"): "'(B) 12/25/1937' is compared verbatim with '(B)'",
    ("lm-eval", "text_only"): "an option's text is never mapped to its letter",
    ("lm-eval", "lowercase_letter"): "'(b)' != '(B)'",
    ("lm-eval", "number_with_note"): "'8 (after checking the 2 parts again)' is compared verbatim",
    ("lm-eval", "phrased"): "'not plausible' / 'Elanor does not tell the truth' are compared verbatim",
    ("lm-eval", "note"): "a dyck answer's note is compared verbatim",
    ("lm-eval", "one_per_line"): "'the answer is:' ends its line ('[invalid]')",
    ("lm-eval", "numbered_list"): "'the answer is:' ends its line ('[invalid]')",
    # lm-eval 0.4.13, agieval math: is_equiv(parse_math_answer(completion), parse_math_answer(gold))
    ("lm-eval", "dollars"): "the gold is parsed too: without '$' it shrinks to its last number ('(3,4]' -> '4')",
    ("lm-eval", "boxed"): "the gold is parsed too: without '$' it shrinks to its last number ('(3,4]' -> '4')",
    ("lm-eval", "list_reordered"): "both lists shrink to their last number, so their order decides",
    ("lm-eval", "list_item_missing"): "no number on either side: both parse to None and None == None ('C' for 'B, C')",
    # upstream AGIEval @ 5c77d07: post_process + evaluate_single_sample
    ("upstream", "paren"): MULTI_LABEL,
    ("upstream", "answer_is"): MULTI_LABEL,
    ("upstream", "fullwidth_set"): MULTI_LABEL,
    ("upstream", "and_set"): MULTI_LABEL,
    ("upstream", "bare_and_set"): MULTI_LABEL,
    ("upstream", "bare"): MULTI_LABEL + "; " + LAST_NUMBER,
    ("upstream", "sentence"): LAST_NUMBER,
    ("upstream", "dollars"): "'$...$' keeps what follows its last '=' ('x - 3z = 0' -> '0'); '$5$;$10$' -> '5$;$10'",
    ("upstream", "boxed"): "remove_boxed keeps what follows '=' in the box ('x - 3z = 0' -> '0')",
    ("upstream", "reason_after_comma"): LAST_NUMBER + ": '-1, since ...' -> '1'",
    ("upstream", "grouped_integer"): LAST_NUMBER + ": '371,043,400' -> '400'",
    ("upstream", "plain_word"): "a word answer has no number to keep (None)",
    ("upstream", "list_reordered"): LAST_NUMBER + " (or None without one)",
    ("upstream", "base_without_braces"): LAST_NUMBER + ": '152A_11' -> '11'",
    ("upstream", "article_a"): "zero-shot reads the first capital A-F anywhere: the article 'A'",
    ("upstream", "hedge"): "zero-shot reads the first capital A-F of '(A) or (B)'",
    ("upstream", "echoed_label_cot"): "few-shot-CoT falls back to the first capital A-F of the whole output: "
                                      "the 'A' of the echoed 'Answer:'",
}


@pytest.fixture(scope="module")
def tasks():
    from tasks.agieval import agieval
    from tasks.bbh import bbh

    ctx = TaskContext(data_dir=DATA_DIR)
    return {("bbh", "cot"): bbh(ctx), ("agieval", "zeroshot"): agieval(ctx),
            ("agieval", "cot"): agieval(ctx, variant="cot", shots=0)}


def test_every_kind_of_disagreement_is_explained():
    kinds = {(r["reference"].split()[0], r["form"]) for r in ROWS}
    assert len(ROWS) >= 50 and kinds <= set(WHY), sorted(kinds - set(WHY))


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['reference'].split()[0]}-{r['form']}-{r['sample']}")
def test_the_reference_is_wrong_and_evalsuite_right(tasks, row):
    task = tasks[(row["task"], row["variant"])]
    sample = next(s for s in task.samples if s.id == row["sample"])
    score = next(iter(task.score([(sample, ModelOutput(completions=[row["output"]]))])))
    verdict = score.metrics["exact_match" if row["task"] == "bbh" else "acc"] == 1.0
    assert row["reference_verdict"] != row["truth"]  # the reference misreads this output
    assert verdict == row["truth"], (row["output"], score.answer)
