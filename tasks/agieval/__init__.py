"""AGIEval v1: 21 subsets (8,269 items) of human exams, English and Chinese.

One factory, :func:`build`, serves every group; ``agieval`` (all 21),
``agieval_en`` (10), ``agieval_zh`` (11) and ``agieval_orca`` (8 English MC)
are thin wrappers that fix the group.  Every subset is a subtask, so results
carry per-subset ``acc`` ± stderr and the macro (headline) and micro means.
``agieval`` also reports per-language aggregates as extra metrics
``acc_en_macro``, ``acc_en_micro``, ``acc_zh_macro``, ``acc_zh_micro``.

Parameters (``-T key=value``)
  variant        zeroshot (default) | fewshot | cot.  Prompts follow upstream
                 ``src/dataset_loader.py``: zero-shot "…Q: … Answer Choices: …\\nA:
                 Among A through E, the answer is" / "…问题：… 选项：…\\n答案：从A到D,
                 我们应选择"; few-shot "Here are the answers for the problems in the
                 exam." + "Problem k.   …\\nChoose from the following options: …" +
                 "The answer is therefore X" demos from few_shot_prompts.csv; cot =
                 few-shot-CoT (each demo adds "Explanation for Problem k:   <the
                 csv explanation>") or, with shots=0, upstream's zero-shot-CoT stage-1
                 trigger ("Let's think step by step." / "让我们逐步思考：").
                 Deviations (documented approximations): the query's answer start is
                 prefilled ("The answer is therefore" / "Explanation for Problem k:"),
                 and CoT answers are extracted from the reasoning directly instead of
                 upstream's second "Therefore, the answer is" call.
  shots          number of demos (default: all in the csv, 3-5; 0 for zeroshot).
  shot_selection fixed (csv order) | random (seeded by --seed and the item id).
                 A demo that is the item itself (same passage and question) is never
                 used for it (gaokao-chemistry/38 gets the other 4).
  scoring        generate (default) | loglikelihood: MC subsets score each option
                 as a continuation (acc, acc_norm); cloze subsets still generate.
  choice_format  letter (" (A)", or " A" after a few-shot "The answer is therefore")
                 | text (the option text without its prefix) for loglikelihood.
  self_consistency, temperature: n sampled answers, majority vote (acc) and mean
                 single-sample accuracy (acc_single); see evalsuite.selfconsistency.
  subsets, fewshot_as_chat, normalize_options, max_new_tokens.

Scoring rules
  * MC options are identified by POSITION: option k is letter k.  With
    ``normalize_options`` (default) every option is shown as "(X)text", so the
    letters the model sees match; standard "(X)" options are unchanged.
  * Gold is a set of letters and the answer must equal it exactly: single-answer
    items are 1-sets; gaokao-physics, jec-qa-ca, jec-qa-kd (lists) and the 7
    gaokao-mathqa items with multi-letter strings ("AD", "A B D") are multi-sets.
    Every letter of the answer's option set is read ("AC", "A、C", "(A)(C)",
    "（A）（C）", "(A) and (C)", "A and C"), for single-answer items too (two
    letters there are wrong, not cut to the first); options joined by "or" /
    "或" are a hedge and no answer.  Under loglikelihood a multi-answer item
    counts when the top option is gold.
  * Generated MC answers are read after the LAST answer marker ("answer is",
    "答案是", "我们应选择", …); when the marker's line names no option (an echoed
    "Answer:" before a chain of thought), or CoT has no marker, the last "(X)"
    counts.  A bare "A" followed by a word is the article ("A careful reading
    shows (C)" answers C).
  * Cloze (math, gaokao-mathcloze): the last \\boxed{} or the first sentence after
    the marker (a ", since …" reason is cut off), then: $…$, \\boxed, spacing,
    trailing units (\\text{ cm}, \\mbox{ inches}^2, "cm", "degrees", °, %) and
    \\text{} wrappers are removed; numbers compare exactly (0.5 == 1/2 ==
    \\frac{1}{2}; an integer never equals its neighbour), words and letter blocks
    as text, numbers in a base ("42_{7}" == "42_7") digit by digit with their
    base, solution lists without brackets as unordered multisets; everything
    else symbolically with HF math-verify (2\\sqrt{2} == \\sqrt{8}).  Several
    blanks ("$5$;$10$") compare in order, split on ";" (or ",", "，", "和", "and").

Data quirks (all counted in TaskResult.notes["quirks"], over the loaded files):
multi-letter label strings, the empty jec-qa-kd label (item dropped, counted), a
stray "。" in a jec-qa-ca label list (line 48; dropped from the set),
option prefixes restyled / relettered / unlettered (incl. gaokao-chemistry 107),
options with no text after the letter (gaokao-chemistry 74, 77: "(D)"),
SAT files without an ``answer`` key.
"""

from __future__ import annotations

import ast
import csv
import inspect
import io
import re
from collections import Counter
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any, Literal

from evalsuite.backends.base import cut_at_stop
from evalsuite.data import DataSource
from evalsuite.errors import UserError, unknown_name
from evalsuite.metrics import aggregate_means
from evalsuite.multiple_choice import choice_score
from evalsuite.prompting import END_OF_TURN, Turn, assemble, select_shots
from evalsuite.records import GenerationConfig, MetricValue, Sample, SampleResult, Score, TaskResult
from evalsuite.selfconsistency import sampling_config, vote_score
from evalsuite.task import (
    ChoiceRequest, GenerateRequest, NonNegativeFloat, NonNegativeInt, PositiveInt, Task, TaskContext, TaskFactory,
    per_item, task,
)
from evalsuite.templates import task_templates
from tasks.agieval.answers import (
    LETTERS,
    canonical_math,
    choice_answer,
    cloze_answer,
    display_options,
    gold_letters,
    math_equal,
    option_text,
)

EN = ["aqua-rat", "gaokao-english", "logiqa-en", "lsat-ar", "lsat-lr", "lsat-rc", "math", "sat-en",
      "sat-en-without-passage", "sat-math"]
ZH = ["gaokao-biology", "gaokao-chemistry", "gaokao-chinese", "gaokao-geography", "gaokao-history",
      "gaokao-mathcloze", "gaokao-mathqa", "gaokao-physics", "jec-qa-ca", "jec-qa-kd", "logiqa-zh"]
GROUPS = {
    "all": EN + ZH,
    "en": EN,
    "zh": ZH,
    "orca": ["aqua-rat", "logiqa-en", "lsat-ar", "lsat-lr", "lsat-rc", "sat-en", "sat-en-without-passage", "sat-math"],
}
CLOZE = {"math", "gaokao-mathcloze"}
MULTI = {"gaokao-physics", "jec-qa-ca", "jec-qa-kd"}
VARIANTS = {
    "zeroshot": "upstream zero-shot prompt (default)",
    "fewshot": "3-5 demos from few_shot_prompts.csv, answer only",
    "cot": "few-shot chain-of-thought with the csv explanations (zero-shot-CoT with shots=0)",
}


def lang_of(subset: str) -> str:
    return "en" if subset in EN else "zh"


def build(
    ctx: TaskContext,
    group: Literal["all", "en", "zh", "orca"] = "all",
    variant: Literal["zeroshot", "fewshot", "cot"] = "zeroshot",
    shots: NonNegativeInt | None = None,
    subsets: list[str] | None = None,
    scoring: Literal["generate", "loglikelihood"] = "generate",
    choice_format: Literal["letter", "text"] = "letter",
    shot_selection: Literal["fixed", "random"] = "fixed",
    fewshot_as_chat: bool = False,
    normalize_options: bool = True,
    self_consistency: PositiveInt = 1,
    temperature: NonNegativeFloat = 0.7,
    max_new_tokens: PositiveInt | None = None,
) -> Task:
    name = "agieval" if group == "all" else f"agieval_{group}"
    chosen = subsets or GROUPS[group]
    for s in chosen:
        if s not in GROUPS[group]:
            raise unknown_name(f"{name} subset", s, GROUPS[group])
    cot = variant == "cot"
    n_shots = (0 if variant == "zeroshot" else None) if shots is None else shots
    if variant == "zeroshot" and n_shots:
        raise UserError(f"{name}: variant=zeroshot takes no shots; use variant=fewshot or cot")
    if variant == "fewshot" and n_shots == 0:
        raise UserError(f"{name}: variant=fewshot needs shots >= 1 (shots=0 is variant=zeroshot)")
    if scoring == "loglikelihood" and (cot or self_consistency > 1):
        raise UserError(f"{name}: scoring=loglikelihood scores the options directly; it cannot combine with "
                        "variant=cot or self_consistency (use scoring=generate)")
    # Few-shot demos end in "The answer is therefore X": options then continue as " X".
    after_therefore = n_shots != 0 and not cot

    templates = task_templates(__file__)
    source = DataSource("agieval", ctx.data_dir, hub_id=None)
    source.require_mirror(
        name, "the hub copies hails/agieval-* are preprocessed prompts without the separate passage, question and "
        "options, and without few_shot_prompts.csv", "<subset>.jsonl and few_shot_prompts.csv")
    quirks: Counter[str] = Counter()
    demos = load_demos(source.read_text("few_shot_prompts.csv"), quirks) if n_shots != 0 else {}
    samples: list[Sample] = []
    for subset in chosen:
        rows = source.json_rows(f"{subset}.jsonl", required=("question", "options", "label"))
        for i, row in enumerate(rows):
            sample = make_sample(subset, i, row, normalize_options, quirks)
            if sample is not None:
                samples.append(sample)
        if n_shots is not None and n_shots > len(demos_for(demos, subset)):
            raise UserError(f"{name}: {subset} has {len(demos_for(demos, subset))} demos in few_shot_prompts.csv, asked for {n_shots}")

    base = GenerationConfig(
        max_new_tokens=max_new_tokens or (512 if cot else 48),
        # No "\n\n" stop: chat models often open with "A:" and a blank line before the answer.
        stop=["\nProblem ", "\n问题 ", "\nQ:", "\n问题："],
    )
    config = sampling_config(base, self_consistency, temperature, ctx.seed)

    pools = {subset: demos_for(demos, subset) for subset in chosen}
    # Which math-verify judged the cloze answers: a different version may judge differently.
    equivalence = {"math_equivalence": f"math-verify {version('math-verify')}"} if CLOZE & set(chosen) else {}

    def shots_for(sample: Sample) -> list[dict[str, Any]]:
        """The item's demos; an item that is itself a demo gets the others (one fewer if all were asked for)."""
        me = identity(sample.input)
        pool = [d for d in pools[sample.subtask] if identity(d) != me]
        k = min(len(pools[sample.subtask]) if n_shots is None else n_shots, len(pool))
        return select_shots(pool, k, selection=shot_selection, seed=ctx.seed, key=sample.id)

    def prompt(sample: Sample) -> Any:
        inp = sample.input
        lang, options = inp["lang"], inp["options"]
        fields = dict(lang=lang, passage=inp["passage"], question=inp["question"], options=options,
                      last_letter=LETTERS[len(options) - 1] if options else "", cot=cot)
        if n_shots == 0:
            return assemble(ctx, instruction=None, shots=[], query=templates.render("zeroshot_query.j2", **fields),
                            answer_prefix=templates.render("zeroshot_answer.j2", **fields))
        chosen_demos = shots_for(sample)
        turns = []
        for k, d in enumerate(chosen_demos, 1):
            question = templates.render("fewshot_question.j2", **{**d, "lang": lang, "number": k})
            if k == 1:  # upstream: the header line directly above the first problem
                question = templates.render("fewshot_instruction.j2", lang=lang) + "\n" + question
            turns.append(Turn(question, templates.render("fewshot_answer.j2", lang=lang, number=k, cot=cot,
                                                        explanation=d["explanation"], answer=d["answer"])))
        number = len(turns) + 1
        query = templates.render("fewshot_question.j2", **{**fields, "number": number})
        if not turns:
            query = templates.render("fewshot_instruction.j2", lang=lang) + "\n" + query
        prefix = templates.render("fewshot_prefix.j2", lang=lang, cot=cot, number=number)
        return assemble(ctx, instruction=None, shots=turns, query=query, answer_prefix=prefix,
                        fewshot_as_chat=fewshot_as_chat)

    def choices(sample: Sample) -> list[str]:
        """The options as scored, each continued after a space (lm-eval's target_delimiter)."""
        options = sample.input["options"]
        if choice_format == "text":  # an empty option (gaokao-chemistry 74, 77) keeps its letter
            return [option_text(o, k) or f"({LETTERS[k]})" for k, o in enumerate(options)]
        return [LETTERS[k] if after_therefore else f"({LETTERS[k]})" for k in range(len(options))]

    def request(sample: Sample) -> GenerateRequest | ChoiceRequest:
        if scoring == "loglikelihood" and sample.subtask not in CLOZE:
            return ChoiceRequest(prompt(sample), [" " + c for c in choices(sample)])
        return GenerateRequest(prompt(sample), config)

    def score(sample: Sample, response: Any) -> Score:
        if hasattr(response, "logprobs"):
            gold = {LETTERS.index(x) for x in sample.target}
            s = choice_score(response, choices(sample), gold)
            return s.model_copy(update={"answer": LETTERS[s.answer]})
        # Generations from elsewhere (`evalsuite score --samples`) may run on into the next
        # question and its answer, or keep an end-of-turn token: cut them where this task's
        # generation stops.
        stops = [*config.stop, *END_OF_TURN]
        return score_generation(sample, [cut_at_stop(c, stops)[0] for c in response.completions], cot)

    def aggregate(results: Sequence[SampleResult]) -> TaskResult:
        notes: dict[str, Any] = {"quirks": dict(sorted(quirks.items())), **equivalence}
        if group == "all":
            notes["aggregates"] = ("acc_en_macro/_micro and acc_zh_macro/_micro: macro and size-weighted means "
                                   "over the English (10) and Chinese (11) subsets; gaokao-english counts as English")
        result = aggregate_means(results, "acc", "macro", notes=notes)
        if group != "all":
            return result
        extra: dict[str, MetricValue] = {}
        for lang, members in (("en", EN), ("zh", ZH)):
            part = aggregate_means([r for r in results if r.subtask in members], "acc", "macro")
            for agg in ("macro", "micro"):
                for metric in ("acc", "acc_norm"):
                    if f"{metric}_{agg}" in part.metrics:
                        extra[f"{metric}_{lang}_{agg}"] = part.metrics[f"{metric}_{agg}"]
        return result.model_copy(update={"metrics": {**result.metrics, **extra}})

    params = {"variant": variant, "shots": n_shots, "subsets": chosen, "scoring": scoring,
              "choice_format": choice_format, "shot_selection": shot_selection, "fewshot_as_chat": fewshot_as_chat,
              "normalize_options": normalize_options, "self_consistency": self_consistency,
              "temperature": temperature if self_consistency > 1 else None}
    return Task(
        name=name,
        version="1.0",
        samples=samples,
        request=request,
        score=per_item(score),
        aggregate=aggregate,
        dataset=source.info(),
        params=params,
        template_hashes=templates.hashes,
        generation=config if scoring == "generate" or any(s.subtask in CLOZE for s in samples) else None,
        notes={"quirks": dict(quirks), **equivalence},
    )


def make_sample(subset: str, index: int, row: dict[str, Any], normalize: bool, quirks: Counter[str]) -> Sample | None:
    """One Sample from a jsonl row; quirks are counted, bad labels dropped (and counted)."""
    sid = f"{subset}/{index}"
    if "answer" not in row:
        quirks["missing_answer_key"] += 1
    meta: dict[str, Any] = {}
    if subset in CLOZE:
        if not isinstance(row.get("answer"), str) or not row["answer"].strip():
            quirks["dropped_empty_answer"] += 1
            return None
        options, target = None, row["answer"]
    else:
        raw = row.get("options") or []
        letters, quirk = gold_letters(row["label"])
        if quirk:
            quirks[quirk] += 1
            meta["label_quirk"] = quirk
        if not letters:
            return None  # the empty jec-qa-kd label: nothing to score against (counted above)
        if not raw or any(x not in LETTERS[: len(raw)] for x in letters):
            quirks["dropped_label_out_of_range"] += 1
            return None
        options, kinds = display_options(list(raw), normalize)
        if any(not option_text(o, k) for k, o in enumerate(raw)):
            quirks["options_empty_text"] += 1
        for kind in sorted(set(kinds) - {"standard"}):
            quirks[f"options_{kind}"] += 1  # items with at least one such option
            meta.setdefault("option_prefixes", []).append(kind)
        target = letters
    return Sample(
        id=sid,
        subtask=subset,
        input={"passage": row.get("passage") or "", "question": row["question"], "options": options,
               "lang": lang_of(subset)},
        target=target,
        choices=options,
        metadata=meta,
    )


def score_generation(sample: Sample, completions: Sequence[str], cot: bool) -> Score:
    lang, options = sample.input["lang"], sample.input["options"]
    if options is None:
        blanks = len([g for g in sample.target.split(";") if g.strip()])

        def extract(text: str) -> str | None:
            return canonical_math(cloze_answer(text, lang), ordered=blanks > 1)

        def correct(answer: str | None) -> bool:
            return math_equal(answer, sample.target)
    else:
        multi = sample.subtask in MULTI or len(sample.target) > 1

        def extract(text: str) -> frozenset[str] | None:  # type: ignore[misc]
            return choice_answer(text, len(options), multi, lang, cot)

        def correct(answer: frozenset[str] | None) -> bool:  # type: ignore[misc]
            return answer is not None and answer == frozenset(sample.target)

    if len(completions) > 1:
        return vote_score(completions, extract, correct, "acc")
    answer = extract(completions[0])
    return Score(
        metrics={"acc": float(correct(answer)), "answer_found": float(answer is not None)},
        answer=sorted(answer) if isinstance(answer, frozenset) else answer,
        detail=None if answer is not None else "no answer found in the output",
    )


# -- few-shot demonstrations -----------------------------------------------------


def identity(item: dict[str, Any]) -> tuple[str, str]:
    """What makes an item the same problem as a demo: its passage and question.

    The question alone is not enough (many lsat-rc items share one question on
    different passages); options are left out because the csv copy of a demo
    may format them differently (gaokao-chemistry/38: "$\\mathrm{KI}$" vs "KI").
    A demo is compared with its original passage, also for sat-en-without-passage.
    """
    passage = item.get("original_passage", item.get("passage")) or ""
    return passage.strip(), item["question"].strip()


def load_demos(text: str, quirks: Counter[str]) -> dict[str, list[dict[str, Any]]]:
    """Column -> demos of few_shot_prompts.csv: "sample k" dicts + "explanation k" text."""
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    demos: dict[str, list[dict[str, Any]]] = {}
    for col, subset in enumerate(header):
        if not subset:
            continue
        out = []
        for r in range(0, len(body) - 1, 2):
            cell, explanation = body[r][col].strip(), body[r + 1][col]
            if not cell:
                continue
            quirks["escaped_explanations"] += unescape(explanation) != explanation
            try:
                d = ast.literal_eval(cell)
            except (ValueError, SyntaxError) as exc:
                raise UserError(f"few_shot_prompts.csv: {subset} {body[r][0]}: not a Python dict literal ({exc})") from None
            out.append(d | {"explanation": unescape(explanation).replace("\n\n", "\n").strip()})
        demos[subset] = out
    return demos


def unescape(cell: str) -> str:
    """Some csv explanations are stored escaped (literal "\\n", doubled backslashes,
    no real newline): decode those in one pass; leave the others untouched."""
    if "\n" in cell or not re.search(r"\\[\\n]", cell):
        return cell
    return re.sub(r"\\([\\n])", lambda m: "\n" if m.group(1) == "n" else "\\", cell)


def demos_for(demos: dict[str, list[dict[str, Any]]], subset: str) -> list[dict[str, Any]]:
    """Prompt-ready demos of a subset; sat-en-without-passage uses sat-en's without passages."""
    column = "sat-en" if subset == "sat-en-without-passage" else subset
    out = []
    for d in demos.get(column, []):
        options = d.get("options")
        if options:
            shown, _ = display_options(list(options), True)
            letters, _ = gold_letters(d.get("label"))
            answer = "".join(letters)
        else:
            shown, answer = None, d.get("answer") or ""
        passage = "" if subset == "sat-en-without-passage" else (d.get("passage") or "")
        out.append({"passage": passage, "question": d["question"], "options": shown, "answer": answer,
                    "explanation": d["explanation"], "original_passage": d.get("passage") or ""})
    return out


# -- registered groups: the same factory with the group fixed -------------------


def _group(group: str, description: str) -> TaskFactory:
    def factory(ctx: TaskContext, **params: Any) -> Task:
        return build(ctx, group=group, **params)  # type: ignore[arg-type]

    sig = inspect.signature(build)
    factory.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "group"])  # type: ignore[attr-defined]
    factory.__annotations__ = {k: v for k, v in build.__annotations__.items() if k != "group"}
    factory.__name__ = "agieval" if group == "all" else f"agieval_{group}"
    return task(description, variants=VARIANTS)(factory)


agieval = _group("all", "AGIEval v1: all 21 subsets (8,269 items), per-language aggregates")
agieval_en = _group("en", "AGIEval English: 10 subsets (3,852 items)")
agieval_zh = _group("zh", "AGIEval Chinese: 11 subsets (4,417 items)")
agieval_orca = _group("orca", "AGIEval Orca-style English MC: 8 subsets")
