"""Side by side on identical outputs: evalsuite vs lm-eval 0.4.13 (BBH CoT, AGIEval math)
and vs upstream AGIEval (ruixiangcui/AGIEval @ 5c77d07: post_process + evaluate_single_sample).

Model outputs are built from every real item of the mirror, one per answer form (the
ordinary ones -- "So the answer is (B).", "**(B)**", "The answer is B" -- and the forms of
issue 8: option text starting with "A", two answer phrases on a line, hedges, integers with
notes, word lists, lower-case letters, yes/no-free phrasings, dyck notes, option sets,
echoed labels, cloze spellings).  Each output's true verdict is known by construction, so
every disagreement is attributed: to the reference (it misreads the output) or to us (then
this script exits 1).

Run it where lm-eval is installed, never in the project's venv (it is no dependency):

    python3 -m venv /tmp/lmeval-venv
    /tmp/lmeval-venv/bin/pip install lm-eval==0.4.13 math-verify pydantic jinja2 click rich
    mkdir -p /tmp/agieval-upstream       # upstream's src/ at 5c77d07 (MIT), never copied into the project:
    git -C <clone of ruixiangcui/AGIEval> archive 5c77d07 src | tar -x -C /tmp/agieval-upstream
    EVALSUITE_DATA_DIR=../shared/data /tmp/lmeval-venv/bin/python tools/compare_references.py \\
        --agieval-src /tmp/agieval-upstream [--write tests/data/reference_disagreements.jsonl]

``--write`` keeps up to three examples of every (reference, form, verdict) disagreement;
tests/test_reference_disagreements.py replays them through evalsuite's scorers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import types
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalsuite.records import ModelOutput  # noqa: E402
from evalsuite.task import TaskContext  # noqa: E402
from tasks.agieval.answers import LETTERS  # noqa: E402
from tasks.bbh.extract import Format, answer_format, normalize_target, options  # noqa: E402

REASONING = "Let's think step by step.\nWe check each part of the question in turn.\n"


# -- BBH --------------------------------------------------------------------------------


def bbh_cases(subtask: str, question: str, target: str) -> Iterator[tuple[str, str, str | None]]:
    """(form, output, intended answer in the target's form or None) for one item."""
    fmt = answer_format(subtask)
    if fmt is Format.CHOICE:
        opts = options(question)
        if not re.fullmatch(r"\([A-Z]\)", target) or len(opts) < 2:
            return  # the 3 option-text targets, and snarks/88 whose options are cut off upstream
        right = target[1]
        wrong = next(x for x in opts if x != right)
        for letter in (right, wrong):
            ans, text = f"({letter})", opts[letter]
            yield from _common(ans, f"({wrong if letter == right else right})", ans)
            yield "letter_and_text", f"{REASONING}So the answer is ({letter}) {text}.", ans
            same_text = sum(t == text for t in opts.values()) > 1  # snarks/86: two identical options
            yield "text_only", f"{REASONING}So the answer is {text}.", None if same_text else ans
            yield "lowercase_letter", f"{REASONING}So the answer is ({letter.lower()}).", ans
        return
    if fmt is Format.BINARY:
        from tasks.bbh.extract import BINARY_WORDS

        words = BINARY_WORDS[subtask]
        for word in words:
            other = words[1 - words.index(word)]
            yield from _common(word, other, word)
            if subtask == "sports_understanding":
                yield "phrased", f"{REASONING}So the answer is {'plausible' if word == 'yes' else 'not plausible'}.", word
            if subtask == "web_of_lies":
                name = re.search(r"Does (\w+) tell the truth\?", question).group(1)
                said = "tells the truth" if word == "Yes" else "does not tell the truth"
                yield "phrased", f"{REASONING}So the answer is {name} {said}.", word
        return
    if fmt is Format.INTEGER:
        for n in (int(target), int(target) + 1):
            yield from _common(str(n), str(n + 2), str(n))
            yield "number_with_note", f"{REASONING}So the answer is {n} (after checking the 2 parts again).", str(n)
        return
    if fmt is Format.BRACKETS:
        wrong = target + " )"
        for ans in (target, wrong):
            yield from _common(ans, wrong if ans == target else target, normalize_target(ans, subtask))
            yield "note", f"{REASONING}So the answer is {ans} (closing the open brackets).", normalize_target(ans, subtask)
        return
    words = target.split()
    for order in (words, words[::-1]):
        ans = " ".join(order)
        other = " ".join(words[::-1] if order == words else words)
        yield from _common(ans, other, ans)
        yield "one_per_line", f"{REASONING}So the answer is:\n" + "\n".join(order), ans
        yield "numbered_list", f"{REASONING}So the answer is:\n" + "\n".join(
            f"{i}. {w}" for i, w in enumerate(order, 1)) + "\n(in alphabetical order)", ans


def _common(ans: str, other: str, intended: str) -> Iterator[tuple[str, str, str | None]]:
    yield "canonical", f"{REASONING}So the answer is {ans}.", intended
    yield "no_final_period", f"{REASONING}So the answer is {ans}", intended
    yield "bold", f"{REASONING}So the answer is **{ans}**.", intended
    yield "capital_The", f"{REASONING}The answer is {ans}.", intended
    yield "colon", f"{REASONING}So the answer is: {ans}.", intended
    yield "next_line", f"{REASONING}So the answer is:\n{ans}", intended
    yield "two_phrases_one_line", f"{REASONING}At first the answer is {other}, but that was a slip. So the answer is {ans}.", intended
    yield "hedge", f"{REASONING}So the answer is either {ans} or {other}.", None


def compare_bbh(data_dir: Path) -> list[dict]:
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.filters.selection import TakeFirstFilter

    from tasks.bbh import SUBTASKS, bbh

    # lm-eval 0.4.13 bbh/cot_fewshot/_cot_fewshot_template_yaml: regex + take_first, then exact_match.
    regex, first = RegexFilter(regex_pattern=r"(?<=the answer is )(.*)(?=.)"), TakeFirstFilter()
    rows = []
    for subtask in SUBTASKS:
        task = bbh(TaskContext(data_dir=data_dir), subtasks=[subtask])
        for sample in task.samples:
            for form, output, intended in bbh_cases(subtask, sample.input["input"], sample.target):
                truth = intended is not None and intended == normalize_target(sample.target, subtask)
                ours = next(iter(task.score([(sample, ModelOutput(completions=[output]))])))
                (reading,) = list(first.apply(regex.apply([[output]], [None]), [None]))
                lm = exact_match_hf_evaluate([reading], [sample.target])["exact_match"] == 1.0
                rows.append({"reference": "lm-eval 0.4.13 bbh_cot_fewshot", "task": "bbh", "sample": sample.id,
                             "form": form, "output": output, "target": sample.target, "truth": truth,
                             "ours": ours.metrics["exact_match"] == 1.0, "our_answer": ours.answer,
                             "reference_verdict": bool(lm), "reference_reading": reading, "variant": "cot"})
    return rows


# -- AGIEval ----------------------------------------------------------------------------


def mc_cases(gold: list[str], n: int, multi: bool) -> Iterator[tuple[str, str, str, frozenset | None]]:
    """(form, setting, output, intended letters or None)."""
    other = next((x for x in LETTERS[:n] if x not in gold), gold[-1])
    for letters in (gold, [other]) if len(gold) == 1 else (gold, gold[:1]):
        want = frozenset(letters)
        paren = "".join(f"({x})" for x in letters)
        yield "paren", "zero-shot", f" {paren}", want
        yield "bare", "zero-shot", " " + "".join(letters), want
        yield "answer_is", "few-shot", f"The answer is therefore {paren}.", want
        yield "echoed_label_cot", "few-shot-CoT", f"Answer: Let's think step by step.\n{REASONING}Therefore, {paren} is correct.", want
        yield "article_a", "zero-shot", f" A careful reading shows {paren} is right.", want
        if len(letters) == 2:
            a, b = letters
            yield "fullwidth_set", "zero-shot", f" （{a}）（{b}）", want
            yield "and_set", "zero-shot", f" ({a}) and ({b})", want
            yield "bare_and_set", "zero-shot", f" {a} and {b}", want
    if other != gold[0]:
        yield "hedge", "zero-shot", f" ({gold[0]}) or ({other})", None


def cloze_cases(gold: str) -> Iterator[tuple[str, str, bool]]:
    """(form, output, whether it means the gold answer)."""
    yield "bare", f" {gold}", True
    yield "sentence", f" {gold}.", True
    if ";" not in gold:  # one blank: wrapped the ways models write it
        yield "dollars", f" ${gold.strip('$')}$", True
        yield "boxed", f"The answer is $\\boxed{{{gold.strip('$')}}}$", True
    if re.fullmatch(r"-?\d+", gold):
        yield "integer_plus_one", f" {int(gold) + 1}", False
        yield "reason_after_comma", f" {gold}, since the two parts agree.", True
    grouped = re.fullmatch(r"\d{1,3}(,\\!\d{3})+", gold)
    if grouped:
        value = int(gold.replace(",\\!", ""))
        yield "grouped_integer", f" {value:,}", True
        yield "integer_plus_one", f" {value + 1}", False
    bare = gold.strip("$")
    tuple_like = re.match(r"\s*(\\left|[\[\(\{]|\\\{)", bare) or "\\cup" in bare
    if "," in bare and not tuple_like and not grouped and ";" not in gold:
        items = [x.strip() for x in re.split(r",(?![^{]*})", bare)]  # commas outside braces
        yield "list_reordered", " " + ", ".join(reversed(items)), True
        yield "list_item_missing", " " + ", ".join(items[1:]), False
    base = re.fullmatch(r"(\w+)_\{(\d+)\}", gold)
    if base:
        yield "base_without_braces", f" {base.group(1)}_{base.group(2)}", True
        yield "other_base", f" {base.group(1)}_{{{int(base.group(2)) + 1}}}", False
    degrees = re.fullmatch(r"(\d+)\^\\circ", gold)
    if degrees:
        yield "degree_sign", f" {degrees.group(1)}°", True
    text = re.fullmatch(r"\\text\{(\w+)\}", gold)
    if text:
        yield "plain_word", f" {text.group(1)}", True


def compare_agieval(data_dir: Path, upstream: Path) -> list[dict]:
    # Upstream's dataset_loader builds a tokenizer at import, for prompt lengths only (never used here).
    stub = sys.modules.setdefault("tiktoken", types.ModuleType("tiktoken"))
    stub.get_encoding = stub.encoding_for_model = lambda name: None
    sys.path.insert(0, str(upstream))
    from lm_eval.tasks.agieval.utils import process_results as lm_math
    from src.evaluation import evaluate_single_sample
    from src.post_process import post_process

    from tasks import agieval as ag

    zeroshot, cot = ag.agieval(TaskContext(data_dir=data_dir)), ag.agieval(TaskContext(data_dir=data_dir), variant="cot", shots=0)
    cot_by_id = {s.id: s for s in cot.samples}
    rows = []
    for sample in zeroshot.samples:
        subset = sample.subtask
        if sample.input["options"] is None:
            for form, output, means_gold in cloze_cases(sample.target):
                ours = next(iter(zeroshot.score([(sample, ModelOutput(completions=[output]))])))
                up = evaluate_single_sample(subset, post_process(subset, "zero-shot", output), sample.target)
                base = {"task": "agieval", "sample": sample.id, "form": form, "output": output, "target": sample.target,
                        "truth": means_gold, "ours": ours.metrics["acc"] == 1.0, "our_answer": ours.answer,
                        "variant": "zeroshot"}
                rows.append(base | {"reference": "upstream AGIEval", "reference_verdict": bool(up),
                                    "reference_reading": str(post_process(subset, "zero-shot", output))})
                rows.append(base | {"reference": "lm-eval 0.4.13 agieval math", "reference_reading": output,
                                    "reference_verdict": bool(lm_math({"answer": sample.target}, [output])["acc"] == 1)})
            continue
        gold, n = list(sample.target), len(sample.input["options"])
        for form, setting, output, want in mc_cases(gold, n, len(gold) > 1):
            task, scored = (cot, cot_by_id[sample.id]) if setting.endswith("CoT") else (zeroshot, sample)
            ours = next(iter(task.score([(scored, ModelOutput(completions=[output]))])))
            reading = post_process(subset, setting, output)
            label = gold if subset in ("jec-qa-kd", "jec-qa-ca", "gaokao-physics") else "".join(gold)
            up = evaluate_single_sample(subset, reading, label)
            rows.append({"reference": "upstream AGIEval", "task": "agieval", "sample": sample.id, "form": form,
                         "output": output, "target": gold, "truth": want == frozenset(gold),
                         "ours": ours.metrics["acc"] == 1.0, "our_answer": ours.answer,
                         "reference_verdict": bool(up), "reference_reading": str(reading),
                         "variant": "cot" if setting.endswith("CoT") else "zeroshot"})
    return rows


# -- math-verify alone, on issue 8's requirements -------------------------------------------

MATH_VERIFY_CHECKS = [  # (requirement, answer, gold, right verdict)
    ("unordered solution list", "\\sqrt{5}, -\\sqrt{5}", "-\\sqrt{5}, \\sqrt{5}", True),
    ("base subscript spelling", "42_7", "42_{7}", True),
    ("another base", "42_8", "42_{7}", False),
    ("no base", "42", "42_{7}", False),
    ("integer gold + 1", "371043401", "371,\\!043,\\!400", False),
    ("trailing degree sign", "30°", "30", True),
    ("\\text{even} vs even", "even", "\\text{even}", True),
    ("864 \\mbox{ inches}^2 vs 864", "864", "864 \\mbox{ inches}^2", True),
    ("an anagram", "silent", "listen", False),
    ("a letter block reordered", "CAF", "ACF", False),
    ("a point's letters reordered", "WV", "VW", False),
    ("escaped dollar gold", "6", "\\$6", True),
    ("symbolic equality", "\\sqrt{8}", "2\\sqrt{2}", True),
]


def math_verify_alone(data_dir: Path) -> None:
    """HF math-verify without our rules: every gold against itself, then the checks above."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    def equal(answer: str, gold: str) -> bool:
        config = [LatexExtractionConfig(), ExprExtractionConfig()]
        g, a = parse(f"${gold.strip('$')}$", extraction_config=config), parse(f"${answer.strip('$')}$", extraction_config=config)
        return bool(g and a) and verify(g, a)

    golds = [json.loads(line)["answer"] for name in ("math", "gaokao-mathcloze")
             for line in (data_dir / "agieval" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    misses = [g for g in golds if not all(equal(part, part) for part in g.split(";"))]
    print(f"\nmath-verify alone: {len(golds) - len(misses)} of {len(golds)} golds equal themselves; misses: {misses}")
    for requirement, answer, gold, right in MATH_VERIFY_CHECKS:
        got = equal(answer, gold)
        print(f"  {'right' if got == right else 'WRONG':5s}  {requirement}: {answer!r} vs {gold!r} -> {got}")


# -- report -------------------------------------------------------------------------------


def report(rows: list[dict]) -> int:
    by_ref: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_ref[r["reference"]].append(r)
    ours_wrong = 0
    for ref, part in by_ref.items():
        agree = sum(r["ours"] == r["reference_verdict"] for r in part)
        ref_right = sum(r["reference_verdict"] == r["truth"] for r in part)
        our_right = sum(r["ours"] == r["truth"] for r in part)
        ours_wrong += len(part) - our_right
        print(f"\n{ref}: {len(part)} outputs; verdicts agree {agree} ({agree / len(part):.2%}); "
              f"right: evalsuite {our_right} ({our_right / len(part):.2%}), reference {ref_right} ({ref_right / len(part):.2%})")
        kinds = Counter((r["form"], "reference credits a wrong answer" if r["reference_verdict"] else "reference misses a right answer")
                        for r in part if r["ours"] != r["reference_verdict"])
        for (form, how), count in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"  {count:6d}  {form:24s} {how}")
    for r in rows:
        if r["ours"] != r["truth"]:
            print("EVALSUITE WRONG:", json.dumps(r, ensure_ascii=False)[:400])
    print(f"\nevalsuite wrong on {ours_wrong} of {len(rows)} outputs")
    return ours_wrong


def examples(rows: list[dict], per_kind: int = 3) -> list[dict]:
    """Up to ``per_kind`` disagreements of every (reference, form, reference verdict), from different subtasks."""
    seen: dict[tuple, set[str]] = defaultdict(set)
    out = []
    for r in rows:
        key, subtask = (r["reference"], r["form"], r["reference_verdict"]), r["sample"].split("/")[0]
        if r["ours"] != r["reference_verdict"] and len(seen[key]) < per_kind and subtask not in seen[key]:
            seen[key].add(subtask)
            out.append(r)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("EVALSUITE_DATA_DIR", ROOT.parent / "shared" / "data")))
    parser.add_argument("--agieval-src", type=Path, required=True, help="folder holding upstream AGIEval's src/")
    parser.add_argument("--write", type=Path, help="JSONL of example disagreements for the tests")
    args = parser.parse_args()
    rows = compare_bbh(args.data_dir) + compare_agieval(args.data_dir, args.agieval_src)
    wrong = report(rows)
    math_verify_alone(args.data_dir)
    if args.write:
        args.write.write_text("".join(json.dumps(r, ensure_ascii=False, default=sorted) + "\n" for r in examples(rows)),
                              encoding="utf-8")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
