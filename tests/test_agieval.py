"""AGIEval on the real data files: groups, prompts, answer formats, quirks, scoring."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from evalsuite.errors import UserError
from evalsuite.records import LoglikelihoodResult, ModelOutput
from evalsuite.task import ChoiceRequest, GenerateRequest, TaskContext
from tasks import agieval as ag
from tasks.agieval.answers import choice_answer, cloze_answer, display_options, gold_letters, math_equal

from tests.conftest import DATA_DIR as DATA
AG = DATA / "agieval"
CTX = TaskContext(data_dir=DATA, chat=False)
ROOT = Path(__file__).resolve().parents[1]


def row(subset: str, line: int) -> dict:
    with open(AG / f"{subset}.jsonl", encoding="utf-8") as f:
        for i, text in enumerate(f):
            if i == line:
                return json.loads(text)
    raise IndexError(line)


@pytest.fixture(scope="module")
def full():
    """The whole benchmark, zero-shot (loading only, no model)."""
    return ag.agieval(CTX)


def by_id(task, sid):
    return next(s for s in task.samples if s.id == sid)


# -- groups and counts ------------------------------------------------------------


def test_groups_and_counts(full):
    counts = Counter(s.subtask for s in full.samples)
    assert len(counts) == 21
    # 8,269 items; the one with an empty label cannot be scored and is dropped (counted).
    assert sum(counts.values()) == 8269 - 1
    assert counts["jec-qa-kd"] == 999 and counts["jec-qa-ca"] == 1000 and counts["math"] == 1000
    en = ag.agieval_en(CTX)
    zh = ag.agieval_zh(CTX)
    orca = ag.agieval_orca(CTX)
    assert {s.subtask for s in en.samples} == set(ag.EN) and len(en.samples) == 3852
    assert {s.subtask for s in zh.samples} == set(ag.ZH) and len(zh.samples) == 4417 - 1
    assert {s.subtask for s in orca.samples} == {"aqua-rat", "logiqa-en", "lsat-ar", "lsat-lr", "lsat-rc", "sat-en",
                                               "sat-en-without-passage", "sat-math"}
    assert (en.name, zh.name, orca.name, full.name) == ("agieval_en", "agieval_zh", "agieval_orca", "agieval")


def test_quirks_counted(full):
    q = full.notes["quirks"]
    assert q["multi_letter_string"] == 7  # gaokao-mathqa lines 148, 149, 245, 246, 247, 285, 286
    assert q["empty_label"] == 1  # jec-qa-kd line 211
    assert q["label_stray_characters"] == 1  # jec-qa-ca line 48: ["A", "C", "D", "。"]
    assert q["missing_answer_key"] == 206 + 206 + 220  # sat-en, sat-en-without-passage, sat-math
    assert q["options_unlettered"] >= 1 and q["options_restyled"] >= 366 and q["options_relettered"] >= 1
    assert q["options_empty_text"] == 2  # gaokao-chemistry 74 and 77: "(D)" with nothing after it


def test_quirk_rows_become_samples(full):
    # Multi-letter strings -> exact gold sets.
    assert row("gaokao-mathqa", 148)["label"] == "AD"
    assert by_id(full, "gaokao-mathqa/148").target == ["A", "D"]
    spaced = [i for i in (149, 245, 246, 247, 285, 286) if " " in row("gaokao-mathqa", i)["label"]]
    assert spaced and by_id(full, f"gaokao-mathqa/{spaced[0]}").target == sorted(set(row("gaokao-mathqa", spaced[0])["label"].replace(" ", "")))
    # The empty label is dropped, its neighbours are not.
    assert row("jec-qa-kd", 211)["label"] == []
    assert not any(s.id == "jec-qa-kd/211" for s in full.samples)
    assert by_id(full, "jec-qa-kd/210") and by_id(full, "jec-qa-kd/212")
    assert by_id(full, "jec-qa-ca/48").target == ["A", "C", "D"]
    # Unlettered gaokao-chemistry options get their positional letter; the lettered ones are unchanged.
    raw = row("gaokao-chemistry", 107)["options"]
    shown = by_id(full, "gaokao-chemistry/107").input["options"]
    assert shown[0] == "(A)" + raw[0].strip() and shown[1] == "(B)" + raw[1].strip() and shown[2:] == raw[2:]
    # A wrongly lettered option ("(C)" in position D) is shown with the letter the scorer uses.
    assert row("gaokao-history", 78)["options"][3].startswith("(C)")
    assert by_id(full, "gaokao-history/78").input["options"][3].startswith("(D)")
    # Restyled prefixes ("A No dangshen") -> "(A)No dangshen"; with normalize_options=False verbatim.
    assert display_options(row("logiqa-zh", 2)["options"], True)[0][0] == "(A)" + row("logiqa-zh", 2)["options"][0][2:]
    assert display_options(row("logiqa-zh", 2)["options"], False)[0] == row("logiqa-zh", 2)["options"]
    # SAT rows without an "answer" key load like the others.
    assert "answer" not in row("sat-math", 0) and by_id(full, "sat-math/0").target == [row("sat-math", 0)["label"]]


# -- prompts: upstream formulas rebuilt here from the raw rows ------------------------


@pytest.mark.parametrize("subset", ["aqua-rat", "lsat-ar", "sat-math"])
def test_zeroshot_prompt_english_mc(subset):
    task = ag.agieval_en(CTX, subsets=[subset])
    r = row(subset, 0)
    letters = "ABCDE"[len(r["options"]) - 1]
    expected = (r["passage"] or "") + "Q: " + r["question"] + " Answer Choices: " + " ".join(r["options"]) + \
        f"\nA: Among A through {letters}, the answer is"
    assert task.request(task.samples[0]).prompt == expected


def test_zeroshot_prompts_chinese_and_cloze():
    task = ag.agieval(CTX, subsets=["gaokao-biology", "gaokao-mathcloze", "math"])
    first = {s.subtask: s for s in reversed(task.samples)}
    r = row("gaokao-biology", 0)
    assert task.request(first["gaokao-biology"]).prompt == "问题：" + r["question"] + " 选项：" + " ".join(r["options"]) + "\n答案：从A到D, 我们应选择"
    r = row("gaokao-mathcloze", 0)
    assert task.request(first["gaokao-mathcloze"]).prompt == "问题：" + r["question"] + "\n答案："
    r = row("math", 0)
    assert task.request(first["math"]).prompt == "Q: " + r["question"] + "\nA: The answer is"


def test_fewshot_demos_from_csv():
    task = ag.agieval_en(CTX, variant="fewshot", subsets=["lsat-ar", "math", "aqua-rat", "sat-en-without-passage"])
    first = {s.subtask: s for s in reversed(task.samples)}
    counts = {k: task.request(s).prompt.count("The answer is therefore") for k, s in first.items()}
    # 3 demos for lsat, 4 for math, 5 for aqua-rat (+1: the prefilled query answer).
    assert counts == {"lsat-ar": 4, "math": 5, "aqua-rat": 6, "sat-en-without-passage": 4}
    sat = task.request(first["sat-en-without-passage"]).prompt
    with_passage = ag.agieval_en(CTX, variant="fewshot", subsets=["sat-en"])
    sat_full = with_passage.request(with_passage.samples[0]).prompt
    # Same sat-en demos, but without their passages.
    demos = ag.demos_for(ag.load_demos((AG / "few_shot_prompts.csv").read_text(encoding="utf-8"), Counter()), "sat-en")
    assert demos[0]["passage"] and demos[0]["passage"][:200] in sat_full and demos[0]["passage"][:200] not in sat
    assert sat.startswith("Here are the answers for the problems in the exam.\nProblem 1.   ")
    assert sat.endswith("\nThe answer is therefore")


def test_cot_uses_explanations_and_unescapes():
    task = ag.agieval_en(CTX, variant="cot", subsets=["aqua-rat"])
    prompt = task.request(task.samples[0]).prompt
    assert prompt.count("Explanation for Problem") == 6 and prompt.endswith("Explanation for Problem 6:")
    assert "\\n" not in prompt  # escaped csv cells are decoded
    assert task.notes["quirks"]["escaped_explanations"] >= 5
    zero_cot = ag.agieval_zh(CTX, variant="cot", shots=0, subsets=["logiqa-zh"])
    assert zero_cot.request(zero_cot.samples[0]).prompt.endswith("\n从A到D, 我们应选择什么？让我们逐步思考：")


def test_random_shots_are_seeded_and_exclude_the_item():
    kw = dict(variant="fewshot", shots=2, shot_selection="random", subsets=["aqua-rat"])
    a = ag.agieval_en(CTX, **kw)
    b = ag.agieval_en(CTX, **kw)
    c = ag.agieval_en(TaskContext(data_dir=DATA, chat=False, seed=7), **kw)
    pa = [a.request(s).prompt for s in a.samples[:6]]
    assert pa == [b.request(s).prompt for s in b.samples[:6]]
    assert pa != [c.request(s).prompt for s in c.samples[:6]]
    assert len(set(pa)) > 1  # each item has its own draw
    # gaokao-chemistry/38 is itself a csv demo (its options formatted differently there):
    # it never sees itself as a demonstration, fixed or random.
    item_q = row("gaokao-chemistry", 38)["question"].strip()
    for kw in ({}, {"shots": 4, "shot_selection": "random"}):
        for seed in (1, 2, 3):
            t = ag.agieval_zh(TaskContext(data_dir=DATA, chat=False, seed=seed), variant="fewshot",
                              subsets=["gaokao-chemistry"], **kw)
            prompt = t.request(by_id(t, "gaokao-chemistry/38")).prompt
            assert prompt.count(item_q) == 1 and prompt.count("答案是") == 4 + 1  # 4 demos + the query's
            other = t.request(by_id(t, "gaokao-chemistry/37")).prompt
            assert other.count("答案是") == (5 if not kw else 4) + 1


def test_fewshot_as_chat_alternates_turns():
    ctx = TaskContext(data_dir=DATA, chat=True, system_message="You are a careful exam taker.")
    task = ag.agieval_en(ctx, variant="fewshot", subsets=["lsat-ar"], fewshot_as_chat=True)
    msgs = task.request(task.samples[0]).prompt
    assert [m.role for m in msgs] == ["system"] + ["user", "assistant"] * 4
    assert msgs[-1].content == "The answer is therefore" and msgs[2].content.startswith("The answer is therefore ")


def test_bad_parameters_are_user_errors(monkeypatch):
    with pytest.raises(UserError, match="subset"):
        ag.agieval_en(CTX, subsets=["gaokao-biology"])
    with pytest.raises(UserError, match="demos"):
        ag.agieval_en(CTX, variant="fewshot", shots=5, subsets=["lsat-ar"])
    with pytest.raises(UserError, match="loglikelihood"):
        ag.agieval_en(CTX, variant="cot", scoring="loglikelihood")
    # Neither a mirror nor the hub (offline): the message names both ways.
    monkeypatch.delenv("EVALSUITE_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="data-dir"):
        ag.agieval_en(TaskContext(data_dir=None))


# -- answers and scoring on real rows ---------------------------------------------


def test_math_equivalence_on_real_golds():
    assert row("gaokao-mathcloze", 1)["answer"] == "$5$;$10$"
    assert math_equal("5;10", "$5$;$10$") and math_equal("5, 10", "$5$;$10$") and not math_equal("10;5", "$5$;$10$")
    assert not math_equal("5", "$5$;$10$")
    golds = [row("math", i)["answer"] for i in range(40)]
    assert "(3,4]" in golds and math_equal("\\boxed{(3,4]}", "(3,4]") and not math_equal("(3,4)", "(3,4]")
    for gold in golds:  # every gold equals itself wrapped the ways models write it
        assert math_equal(f"${gold}$", gold) and math_equal(f"\\boxed{{{gold}}}", gold), gold
    assert math_equal("0.5", "\\frac{1}{2}") and math_equal("1/2", "\\dfrac{1}{2}") and math_equal("\\frac12", "0.5")
    assert math_equal("30 degrees", "30") and math_equal("30^\\circ", "30") and math_equal("10\\text{ cm}", "10")
    assert math_equal("x = 5", "5") and math_equal("x - 3z = 0", "x-3z=0") and not math_equal("0.51", "\\frac{1}{2}")


def test_answer_extraction():
    assert cloze_answer(" $\\frac{1}{2}$. Since the sum ...", "en") == "$\\frac{1}{2}$"
    assert cloze_answer("reasoning...\nThe answer is therefore 12 cm.", "en") == "12 cm"
    assert cloze_answer("... so \\boxed{\\dfrac{3}{4}} is it", "en") == "\\dfrac{3}{4}"
    assert choice_answer(" (B), because the passage says", 4, False, "en", False) == {"B"}
    assert choice_answer("Let's see (A) is wrong... so the answer is (D).", 5, False, "en", True) == {"D"}
    assert choice_answer(" E", 4, False, "en", False) is None  # not an option of a 4-option item
    assert choice_answer("A:", 4, False, "en", False) is None  # an echoed speaker label, not an answer
    assert choice_answer("A: (C)", 4, False, "en", False) == {"C"}
    assert choice_answer("A:\n\n(B) is right", 4, False, "en", False) == {"B"}  # label line skipped
    assert choice_answer("答案是 A、C", 4, True, "zh", True) == {"A", "C"}
    assert choice_answer(" BD", 4, True, "zh", False) == {"B", "D"}
    assert gold_letters("A B D") == (["A", "B", "D"], "multi_letter_string")


def _score(task, sample, text):
    return next(iter(task.score([(sample, ModelOutput(completions=[text]))])))


def test_scoring_formats_on_real_rows(full):
    single = by_id(full, "aqua-rat/0")
    assert _score(full, single, " (A)").metrics["acc"] == 1.0 and _score(full, single, " (B)").metrics["acc"] == 0.0
    multi = by_id(full, "jec-qa-ca/0")
    gold = "".join(multi.target)
    assert len(gold) >= 1 and _score(full, multi, f" {gold}").metrics["acc"] == 1.0
    wrong_set = gold + ("A" if "A" not in gold else "") if len(gold) < 4 else gold[:-1]
    assert _score(full, multi, f" {wrong_set}").metrics["acc"] == 0.0  # exact set, not overlap
    mathqa = by_id(full, "gaokao-mathqa/148")  # "AD"
    assert _score(full, mathqa, " AD").metrics["acc"] == 1.0 and _score(full, mathqa, " A").metrics["acc"] == 0.0
    cloze = by_id(full, "gaokao-mathcloze/1")
    assert _score(full, cloze, "$5$;$10$").metrics["acc"] == 1.0 and _score(full, cloze, "5；10").metrics["acc"] == 1.0
    none = _score(full, single, " I am not sure.")
    assert none.metrics == {"acc": 0.0, "answer_found": 0.0}


def test_loglikelihood_requests_and_scores():
    task = ag.agieval(CTX, scoring="loglikelihood", subsets=["aqua-rat", "math", "gaokao-physics"])
    first = {s.subtask: s for s in reversed(task.samples)}
    req = task.request(first["aqua-rat"])
    assert isinstance(req, ChoiceRequest) and req.continuations == [" (A)", " (B)", " (C)", " (D)", " (E)"]
    assert isinstance(task.request(first["math"]), GenerateRequest)  # cloze still generates
    s = first["aqua-rat"]  # gold A
    res = LoglikelihoodResult(logprobs=[-1.0, -2.0, -3.0, -4.0, -5.0], is_greedy=[True] + [False] * 4, token_counts=[2] * 5)
    assert next(iter(task.score([(s, res)]))).metrics == {"acc": 1.0, "acc_norm": 1.0}
    text = ag.agieval_en(CTX, scoring="loglikelihood", choice_format="text", subsets=["aqua-rat"])
    conts = text.request(text.samples[0]).continuations
    assert conts[0] == " " + row("aqua-rat", 0)["options"][0][3:]
    chem = ag.agieval_zh(CTX, scoring="loglikelihood", choice_format="text", subsets=["gaokao-chemistry"])
    assert row("gaokao-chemistry", 74)["options"][3] == "(D)"
    assert chem.request(by_id(chem, "gaokao-chemistry/74")).continuations[3] == " (D)"  # never an empty option
    # acc_norm divides by characters: a long gold option wins under acc_norm only.
    long = LoglikelihoodResult(logprobs=[-6.0, -2.0, -9.0, -9.0, -9.0], is_greedy=[False] * 5, token_counts=[1] * 5)
    scored = next(iter(text.score([(text.samples[0], long)])))
    expect_norm = max(range(5), key=lambda i: long.logprobs[i] / len(conts[i])) == 0
    assert scored.metrics == {"acc": 0.0, "acc_norm": float(expect_norm)}


def test_cli_run_with_mock(tmp_path):
    """End to end through the CLI: per-subset rows, macro/micro, group aggregates, notes."""
    out = subprocess.run(
        [str(ROOT / ".venv/bin/evalsuite"), "run", "--model", "mock", "--tasks", "agieval", "--limit", "1",
         "--data-dir", str(DATA), "-o", str(tmp_path), "-M", "reply=The answer is (A)."],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(next(tmp_path.glob("*/results.json")).read_text())["tasks"]["agieval"]
    assert len(results["subtasks"]) == 21
    assert {"acc", "acc_macro", "acc_micro", "acc_en_macro", "acc_en_micro", "acc_zh_macro", "acc_zh_micro"} <= set(results["metrics"])
    assert results["notes"]["quirks"]["empty_label"] == 1
    # aqua-rat/0 has gold A: the mock's "(A)" is right there and wrong on sat-math/0 (gold D).
    assert results["subtasks"]["aqua-rat"]["metrics"]["acc"]["value"] == 1.0
    assert results["subtasks"]["sat-math"]["metrics"]["acc"]["value"] == 0.0
    en = [results["subtasks"][s]["metrics"]["acc"]["value"] for s in ag.EN]
    assert results["metrics"]["acc_en_macro"]["value"] == pytest.approx(sum(en) / len(en))


# -- issue 8 §4: every fault kind, on real rows -------------------------------------


@pytest.mark.parametrize("form", ["({a})({b})", "（{a}）（{b}）", "({a}) and ({b})", "{a} and {b}", "{a}、{b}", "{a}{b}",
                                  "{a}, {b}", "答案是{a}和{b}", "The answer is ({a}) and ({b}).",
                                  "{a}, and {b}", "The answer is ({a}), and ({b}).", "{a} & {b}"])
@pytest.mark.parametrize("sid", ["jec-qa-ca/3", "gaokao-physics/18", "gaokao-mathqa/148"])
def test_multi_answer_sets_are_read_whole(full, sid, form):
    sample = by_id(full, sid)
    a, b = sample.target
    score = _score(full, sample, " " + form.format(a=a, b=b))
    assert score.answer == [a, b] and score.metrics["acc"] == 1.0
    assert _score(full, sample, " " + form.format(a=a, b=a)).metrics["acc"] == 0.0  # one of the two only


@pytest.mark.parametrize("text", [" (A) or (D)", " A或D", " A 或者 D", " either A or D"])
def test_alternatives_are_a_hedge_not_an_answer(full, text):
    sample = by_id(full, "gaokao-physics/3")  # gold {A, D}
    score = _score(full, sample, text)
    assert score.metrics == {"acc": 0.0, "answer_found": 0.0}


def test_two_letters_for_a_single_answer_item_are_wrong(full):
    sample = by_id(full, "aqua-rat/0")  # gold A
    for text in (" (A)(C)", " A and C", " (A) and (C)"):
        score = _score(full, sample, text)
        assert score.answer == ["A", "C"] and score.metrics["acc"] == 0.0


ECHOED = [
    "Answer: Let's think step by step.\nThe passage rules out the first two.\nTherefore, ({g}) is correct.",
    "Answer:\nLet's think step by step. Only one option survives.\nSo ({g}) it is.",
    "A: Let's think step by step.\nHence ({g}).",
    "Answer: Let's think step by step.\n(A) is wrong.\n(B) does not follow either.\nTherefore, {g} is correct.",
    # the chain of thought on the label's own line: its first option is not the answer
    "Answer: Let's think step by step. (A) is wrong. Therefore, ({g}) is correct.",
    "答案：让我们一步一步地思考。A项错误。因此选({g})。",
]


@pytest.mark.parametrize("variant", [dict(variant="cot", shots=0), dict(variant="zeroshot")])
@pytest.mark.parametrize("template", ECHOED)
def test_an_echoed_label_before_a_chain_of_thought(variant, template):
    task = ag.agieval_en(CTX, subsets=["logiqa-en"], **variant)
    sample = by_id(task, "logiqa-en/3")  # gold D
    score = _score(task, sample, template.format(g="D"))
    assert score.answer == ["D"] and score.metrics["acc"] == 1.0


@pytest.mark.parametrize("text,answer", [
    ("The answer is: A careful reading shows (D) is right.", ["D"]),
    ("The answer is A careful reading of the passage: (D).", ["D"]),
    (" A close look at the argument shows (D).", ["D"]),
    ("The answer is A.", ["A"]),
    ("The answer is A because the passage says so.", ["A"]),
    ("The answer is A, since it follows.", ["A"]),
])
def test_the_article_a_is_not_option_a(full, text, answer):
    sample = by_id(full, "logiqa-en/3")  # gold D
    score = _score(full, sample, text)
    assert score.answer == answer and score.metrics["acc"] == float(answer == ["D"])


def test_the_gaokao_answer_label_marks_the_answer(full):
    sample = by_id(full, "logiqa-zh/3")
    gold = sample.target[0]
    other = next(x for x in "ABCD" if x != gold)
    text = f"【解析】{other}项错误。\n【答案】{gold}"
    assert _score(full, sample, text).answer == [gold]


@pytest.mark.parametrize("text", ["The answer is not (A); it is (D).", "The answer is (D), not (A).",
                                  "The answer is D rather than A.", "答案不是A，而是D。", "The answer is: not A but D.",
                                  "The answer is never (A); it is (D)."])
def test_an_option_ruled_out_is_not_the_answer(full, text):
    sample = by_id(full, "logiqa-en/3")  # gold D
    score = _score(full, sample, text)
    assert score.answer == ["D"] and score.metrics["acc"] == 1.0


def test_three_options_with_an_oxford_comma_are_one_set(full):
    sample = by_id(full, "gaokao-physics/18")
    a, b = sample.target
    others = [x for x in "ABCD" if x not in sample.target]
    score = _score(full, sample, f"The answer is {a}, {b}, and {others[0]}.")
    assert score.answer == sorted([a, b, others[0]]) and score.metrics["acc"] == 0.0


def _cloze_golds() -> list[tuple[str, str]]:
    return [(f"{subset}/{i}", json.loads(line)["answer"]) for subset in ("math", "gaokao-mathcloze")
            for i, line in enumerate((AG / f"{subset}.jsonl").read_text(encoding="utf-8").splitlines())]


def test_every_cloze_gold_matches_itself(full):
    """All 1,118 golds, fed back as the model's answer (bare, as a sentence, boxed), score 1."""
    golds = _cloze_golds()
    assert len(golds) == 1118
    failures = []
    for sid, gold in golds:
        sample = by_id(full, sid)
        for text in (gold, f" {gold}.", f"The answer is $\\boxed{{{gold}}}$"):
            if _score(full, sample, text).metrics["acc"] != 1.0:
                failures.append((sid, gold, text))
    assert failures == []


@pytest.mark.parametrize("sid", ["math/321", "math/359", "math/530", "math/655", "math/680", "math/715",
                                 "math/780", "math/798", "math/70"])
def test_solution_lists_are_unordered(full, sid):
    sample = by_id(full, sid)
    items = [x.strip() for x in sample.target.split(",")]
    assert len(items) >= 2
    assert _score(full, sample, " " + ", ".join(reversed(items))).metrics["acc"] == 1.0
    assert _score(full, sample, " " + ", ".join(items[1:])).metrics["acc"] == 0.0  # one solution missing
    assert _score(full, sample, " " + ", ".join(items + items[:1])).metrics["acc"] == 0.0  # one too many


def test_ordered_pairs_and_intervals_keep_their_order(full):
    assert row("math", 24)["answer"] == "(9, 3)"
    assert _score(full, by_id(full, "math/24"), " (3, 9)").metrics["acc"] == 0.0
    assert _score(full, by_id(full, "math/310"), " \\left[ 2, \\frac{3}{2} \\right)").metrics["acc"] == 0.0


@pytest.mark.parametrize("sid,same,other", [
    ("math/821", ["42_{7}", "42_7", "$42_{7}$"], ["42_8", "42", "43_7"]),
    ("math/4", ["152A_{11}", "152A_11"], ["152A_{12}", "152B_{11}", "152"]),
    ("math/789", ["0.0011_2", "0.0011_{2}"], ["0.0011_{3}", "0.0011"]),
])
def test_numbers_in_a_base_keep_their_base(full, sid, same, other):
    sample = by_id(full, sid)
    assert all(_score(full, sample, f" {x}").metrics["acc"] == 1.0 for x in same)
    assert all(_score(full, sample, f" {x}").metrics["acc"] == 0.0 for x in other)


def test_integers_compare_exactly(full):
    """No relative tolerance: gold + 1 is wrong for every integer gold of a million or more."""
    big = [(sid, int(gold.replace(",\\!", ""))) for sid, gold in _cloze_golds()
           if re.fullmatch(r"\d{1,3}(,\\!\d{3})+|\d{7,}", gold) and int(gold.replace(",\\!", "")) >= 10**6]
    assert ("math/18", 371043400) in big and len(big) >= 3
    for sid, value in big:
        sample = by_id(full, sid)
        assert _score(full, sample, f" {value}").metrics["acc"] == 1.0
        assert _score(full, sample, f" {value:,}").metrics["acc"] == 1.0
        assert _score(full, sample, f" {value + 1}").metrics["acc"] == 0.0
        assert _score(full, sample, f" {value - 1}").metrics["acc"] == 0.0


@pytest.mark.parametrize("sid,text,acc", [
    ("math/1", " 30, since the two angles are equal.", 1.0),  # gold 30
    ("math/1", " 30，since the two angles are equal.", 1.0),
    ("math/1", " 30, because 60/2 = 30.", 1.0),
    ("math/1", " 30, so the two angles are equal.", 1.0),
    ("math/1", " The answer is $30$, as both angles are equal.", 1.0),
    ("math/1", " 31, since the two angles are equal.", 0.0),
    ("math/1", " 30°.", 1.0),
    ("math/359", " \\sqrt{5} and -\\sqrt{5}", 1.0),  # gold \sqrt{5}, -\sqrt{5}
    ("math/359", " x = -\\sqrt{5}, x = \\sqrt{5}", 1.0),
    ("math/359", " \\{-\\sqrt{5}, \\sqrt{5}\\}", 1.0),
    ("math/359", " \\sqrt{5}", 0.0),
    ("math/532", " 30°", 1.0),  # gold 30^\circ
    ("math/532", " 30 degrees.", 1.0),
    ("math/532", " 30^{\\circ}", 1.0),
    ("math/532", " 31°", 0.0),
    ("math/35", " even", 1.0),  # gold \text{even}
    ("math/35", " \\text{odd}", 0.0),
    ("math/653", " 864", 1.0),  # gold 864 \mbox{ inches}^2
    ("math/653", " 864 square inches", 1.0),
    ("math/653", " 865 \\mbox{ inches}^2", 0.0),
    ("math/374", " Tuesday.", 1.0),  # gold \text{Tuesday}
    ("math/374", " \\text{Tusedya}", 0.0),  # letters of a word are not a product of symbols
    ("math/843", " ACF", 1.0),  # gold \text{ACF}, "in alphabetic order"
    ("math/843", " CAF", 0.0),
    ("math/93", " VW", 1.0),  # gold \text{VW}
    ("math/93", " WV", 0.0),  # math-verify alone: v*w == w*v
    ("math/653", " 864 \\mbox{ inches}^2.", 1.0),  # the gold itself, ending a sentence
    ("math/653", " 864 square inches^2.", 1.0),
    ("math/1", " 30 (exactly).", 1.0),  # a note after the answer
    ("math/1", " $30$ (as computed above)", 1.0),
    ("math/1", " 31 (exactly).", 0.0),
    ("math/1", " 30 or 31", 0.0),  # a hedge
    ("math/359", " \\sqrt{5} or -\\sqrt{5}", 1.0),  # solutions joined by "or"
    ("math/359", " x = \\sqrt{5} or x = -\\sqrt{5}.", 1.0),
    ("math/530", " 0, \\pi and 2\\pi", 1.0),  # gold 0, \pi, 2 \pi
    ("math/530", " 2\\pi, \\pi, or 0", 1.0),
    ("math/530", " 0, \\pi and 3\\pi", 0.0),
    ("math/359", " x=\\sqrt{5}或x=-\\sqrt{5}", 1.0),  # Chinese "or"
    ("math/1", "【答案】30\n【解析】两角相等。", 1.0),  # the gaokao answer label
    ("math/1", "【答案】31", 0.0),
    # one box per solution or blank, on the answer's line: all of them are the answer
    ("math/359", " The solutions are $x = \\boxed{-\\sqrt{5}}$ and $x = \\boxed{\\sqrt{5}}$.", 1.0),
    ("math/359", " So $\\boxed{\\sqrt{5}}, \\boxed{-\\sqrt{5}}$", 1.0),
    ("math/359", " The solutions are $x = \\boxed{-\\sqrt{5}}$ and $x = \\boxed{\\sqrt{6}}$.", 0.0),
    ("gaokao-mathcloze/1", " 答案：$\\boxed{5}$；$\\boxed{10}$", 1.0),  # gold $5$;$10$
    ("math/1", " First $a = \\boxed{2}$.\nSo the answer is $\\boxed{30}$.", 1.0),  # an earlier line's box is not
    ("math/1", " $\\boxed{15} + \\boxed{15} = \\boxed{30}$", 1.0),  # boxes joined by more than a list
    # two blanks given with a comma keep their order (the vote key sorted them: "10, 5")
    ("gaokao-mathcloze/1", " 答案：5，10", 1.0),
    ("gaokao-mathcloze/1", " The answer is 5 and 10.", 1.0),
    ("gaokao-mathcloze/1", " 答案：10，5", 0.0),
    # markdown and display-math wrapping of chat answers
    ("math/1", " The answer is: **30**", 1.0),
    ("math/1", " The answer is `30`.", 1.0),
    ("math/1", " The answer is \\[30\\]", 1.0),
    ("math/1", " **Answer:** $\\boxed{30}$", 1.0),
    ("math/1", " The answer is: **31**", 0.0),
])
def test_cloze_answer_forms(full, sid, text, acc):
    assert _score(full, by_id(full, sid), text).metrics["acc"] == acc


def test_symbolic_equality_by_math_verify(full):
    sample = by_id(full, "gaokao-mathcloze/8")  # gold $2\sqrt{2}$
    assert sample.target == "$2\\sqrt{2}$"
    assert _score(full, sample, " $\\sqrt{8}$").metrics["acc"] == 1.0
    assert _score(full, sample, " $\\sqrt{6}$").metrics["acc"] == 0.0


def test_acc_norm_divides_by_the_options_own_length(data_dir):
    """lm-eval's acc_norm: log-likelihood / len(choice), the choice without its leading space.

    True/False with -6.202/-7.707: per character -1.5505 ("True") < -1.5414 ("False"),
    so acc_norm picks False; dividing by len(" True")/len(" False") would pick True.
    """
    from tasks.bbh import bbh

    task = bbh(TaskContext(data_dir=data_dir), variant="mc", subtasks=["boolean_expressions"])
    sample = next(s for s in task.samples if s.target == "False")
    assert sample.choices == ["True", "False"] and task.request(sample).continuations == [" True", " False"]
    res = LoglikelihoodResult(logprobs=[-6.202, -7.707], is_greedy=[True, False], token_counts=[1, 1])
    score = next(iter(task.score([(sample, res)])))
    assert score.metrics == {"acc": 0.0, "acc_norm": 1.0} and score.answer == "True"
    assert -6.202 / 5 > -7.707 / 6  # the old " " + option lengths would have chosen True


def test_acc_norm_on_agieval_option_texts():
    task = ag.agieval_en(CTX, scoring="loglikelihood", choice_format="text", subsets=["aqua-rat"])
    sample = task.samples[0]
    options = [ag.option_text(o, k) for k, o in enumerate(sample.input["options"])]
    conts = task.request(sample).continuations
    assert conts == [" " + o for o in options]
    lps = [-3.0 * len(o) - 0.5 for o in options]  # per character, the longest option wins
    res = LoglikelihoodResult(logprobs=lps, is_greedy=[False] * 5, token_counts=[1] * 5)
    best_norm = max(range(5), key=lambda i: lps[i] / len(options[i]))
    score = next(iter(task.score([(sample, res)])))
    assert score.metrics["acc_norm"] == float(best_norm == 0)
    assert score.detail == f"acc_norm picks {best_norm}"


def test_fault_kinds_through_evalsuite_run(tmp_path, cli):
    """Multi-answer sets, an echoed label, the article A and cloze forms through `evalsuite run --model mock`."""
    cases = [  # (sample id, reply, answer, acc)
        ("jec-qa-ca/3", "（A）（B）", ["A", "B"], 1.0),
        ("gaokao-physics/3", "A或D", None, 0.0),
        ("logiqa-en/3", "Answer: Let's think step by step.\nOnly D survives.\nTherefore, (D) is correct.", ["D"], 1.0),
        ("logiqa-en/2", "The answer is: A careful reading shows (B) is right.", ["B"], 1.0),
        ("aqua-rat/0", " (A) and (C)", ["A", "C"], 0.0),
        ("math/1", " 30, since the two angles are equal.", "30", 1.0),
        ("math/4", " 152A_11", "152A_11", 1.0),
    ]
    replies = {}
    for sid, reply, _, _ in cases:
        subset, index = sid.split("/")
        replies[row(subset, int(index))["question"]] = reply
    (tmp_path / "replies.json").write_text(json.dumps(replies, ensure_ascii=False))
    subsets = sorted({sid.split("/")[0] for sid, *_ in cases})
    out = cli("run", "--model", "mock", "-M", f"replies={tmp_path / 'replies.json'}", "--tasks", "agieval",
              "-T", "subsets=" + ",".join(subsets), "--limit", "5", "--data-dir", str(DATA), "-o", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    (run,) = (tmp_path / "runs").iterdir()
    records = {r["sample_id"]: r for r in map(json.loads, (run / "samples.jsonl").read_text().splitlines())}
    for sid, reply, answer, acc in cases:
        assert records[sid]["output"]["completions"] == [reply]
        assert (records[sid]["score"]["answer"], records[sid]["score"]["metrics"]["acc"]) == (answer, acc), sid
    notes = json.loads((run / "results.json").read_text())["tasks"]["agieval"]["notes"]
    assert notes["math_equivalence"].startswith("math-verify 0.")  # the judge of cloze answers, in provenance
