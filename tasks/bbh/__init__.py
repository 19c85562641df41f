"""BIG-Bench Hard: 27 subtasks, 6,511 examples, scored by exact match.

Variants: 3-shot chain-of-thought from the official cot-prompts (default),
3-shot answer-only (shots keep only the final answer, as in the paper),
zero-shot, and ``mc``: the answer-only prompt with every option scored by
log-likelihood (``acc``/``acc_norm``, for base models) on the 24 subtasks
with a closed answer set (as lm-eval's leaderboard_bbh: not dyck_languages,
multistep_arithmetic_two, word_sorting).  Options are " (A)"… for letter
subtasks, the two words for binary ones (" True"/" False"), " 0"… " 18" for
object_counting.  Three movie_recommendation/ruin_names-style targets that
name an option text split across two options cannot be mapped to one option:
they are left out of ``mc`` and counted in the notes.

``self_consistency=N`` (with ``temperature``, default 0.7) samples N answers
per item and reports the majority-vote ``exact_match`` and the mean
single-sample ``exact_match_single`` (see evalsuite.selfconsistency).

Scores are reported per subtask with their macro mean as the headline and
the size-weighted micro mean beside it.

Rows come from the mirror (``<data-dir>/bbh/<subtask>.json``) or, without one,
from the hub (``lukaemon/bbh``).  The prompts do not depend on which: the 27
official cot-prompts files ship in ``tasks/bbh/cot-prompts/`` (MIT, with their
LICENSE) and each one used is hashed into the run's ``template_hashes``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Literal

from evalsuite.backends.base import cut_at_stop
from evalsuite.data import DataSource
from evalsuite.metrics import aggregate_means
from evalsuite.multiple_choice import choice_score
from evalsuite.prompting import END_OF_TURN, Turn, assemble
from evalsuite.records import GenerationConfig, Sample, Score
from evalsuite.selfconsistency import sampling_config, vote_score
from evalsuite.task import (
    ChoiceRequest, GenerateRequest, NonNegativeFloat, NonNegativeInt, PositiveInt, Task, TaskContext, per_item, task,
)
from evalsuite.templates import sha256_text, task_templates
from tasks.bbh.extract import BINARY_WORDS, Format, answer_format, answer_span, extract, is_correct, options, read

SUBTASKS = (
    "boolean_expressions causal_judgement date_understanding disambiguation_qa dyck_languages "
    "formal_fallacies geometric_shapes hyperbaton logical_deduction_five_objects "
    "logical_deduction_seven_objects logical_deduction_three_objects movie_recommendation "
    "multistep_arithmetic_two navigate object_counting penguins_in_a_table "
    "reasoning_about_colored_objects ruin_names salient_translation_error_detection snarks "
    "sports_understanding temporal_sequences tracking_shuffled_objects_five_objects "
    "tracking_shuffled_objects_seven_objects tracking_shuffled_objects_three_objects web_of_lies "
    "word_sorting"
).split()
NOT_MC = ("dyck_languages", "multistep_arithmetic_two", "word_sorting")  # open-ended answers
MC_SUBTASKS = tuple(s for s in SUBTASKS if s not in NOT_MC)
ANSWER_IS = "So the answer is "
HUB_ID = "lukaemon/bbh"  # configs = the 27 subtasks, split "test", columns input/target
# The official 3-shot CoT prompts ship with the task (package data, MIT, see its LICENSE),
# so rows from the mirror and from the hub get byte-identical prompts.
PROMPTS_DIR = "cot-prompts"
# Stop at the next question; a bare "Q" (lm-eval) also cuts "Queen".
STOPS = ["\n\nQ:", "\nQ:"]


@task(
    "BIG-Bench Hard: 27 hard reasoning subtasks (6,511 items), exact match",
    variants={
        "cot": "3-shot chain-of-thought from the official prompts (default)",
        "fewshot": "3-shot answer-only",
        "zeroshot": "zero-shot answer-only",
        "mc": "3-shot answer-only, options scored by log-likelihood (24 subtasks; acc, acc_norm)",
    },
)
def bbh(
    ctx: TaskContext,
    variant: Literal["cot", "fewshot", "zeroshot", "mc"] = "cot",
    shots: NonNegativeInt | None = None,
    subtasks: list[str] | None = None,
    fewshot_as_chat: bool = False,
    max_new_tokens: PositiveInt | None = None,
    self_consistency: PositiveInt = 1,
    temperature: NonNegativeFloat = 0.7,
) -> Task:
    cot = variant == "cot"
    mc = variant == "mc"
    n_shots = (0 if variant == "zeroshot" else 3) if shots is None else shots
    if not 0 <= n_shots <= 3:
        from evalsuite.errors import UserError

        raise UserError(f"bbh.shots must be between 0 and 3 (the official prompts have 3), got {n_shots}")
    chosen = subtasks or (MC_SUBTASKS if mc else SUBTASKS)
    for name in chosen:
        if name not in (MC_SUBTASKS if mc else SUBTASKS):
            from evalsuite.errors import unknown_name

            raise unknown_name("bbh subtask" + (" for variant=mc" if mc else ""), name, MC_SUBTASKS if mc else SUBTASKS)
    if mc and self_consistency > 1:
        from evalsuite.errors import UserError

        raise UserError("bbh: variant=mc scores options by log-likelihood; self_consistency needs a generative variant")

    templates = task_templates(__file__)
    source = DataSource("bbh", ctx.data_dir, hub_id=HUB_ID)
    samples: list[Sample] = []
    notes: dict[str, Any] = {}
    prompts: dict[str, tuple[str, list[Turn]]] = {}
    prompt_hashes: dict[str, str] = {}
    for name in chosen:
        rows = (
            source.json_rows(f"{name}.json", field="examples", required=("input", "target"))
            if source.local
            else source.hub_rows(name, "test", required=("input", "target"))
        )
        text = cot_prompt_text(name)
        prompt_hashes[f"{PROMPTS_DIR}/{name}.txt"] = sha256_text(text)
        description, examples = _cot_prompt(text)
        shots = [
            Turn(
                templates.render("question.j2", input=q),
                templates.render("shot_answer.j2", cot=cot, reasoning=a, target=_final_answer(a)),
            )
            for q, a in examples[:n_shots]
        ]
        prompts[name] = (description, shots)
        for i, r in enumerate(rows):
            sample = Sample(id=f"{name}/{i}", subtask=name, input={"input": r["input"]}, target=r["target"])
            if mc:
                choices = mc_choices(name, r["input"])
                if r["target"] not in choices:  # an option text, not one option: cannot be scored
                    notes["mc_unscorable_targets"] = notes.get("mc_unscorable_targets", 0) + 1
                    continue
                sample = sample.model_copy(update={"choices": choices})
            samples.append(sample)

    base = GenerationConfig(max_new_tokens=max_new_tokens or (512 if cot else 64), stop=STOPS)
    config = sampling_config(base, self_consistency, temperature, ctx.seed)

    def request(sample: Sample) -> GenerateRequest | ChoiceRequest:
        description, shots = prompts[sample.subtask]
        prefix = templates.render("answer_prefix.j2", cot=cot)
        prompt = assemble(
            ctx,
            instruction=description,
            shots=shots,
            query=templates.render("question.j2", input=sample.input["input"]),
            # mc: "A:" and options " (A)", so the space belongs to the option (lm-eval's target_delimiter)
            answer_prefix=prefix.rstrip() if mc else prefix,
            fewshot_as_chat=fewshot_as_chat,
        )
        if mc:
            return ChoiceRequest(prompt, [" " + c for c in sample.choices])
        return GenerateRequest(prompt, config)

    def score(sample: Sample, output: Any) -> Score:
        if mc:
            s = choice_score(output, sample.choices, {sample.choices.index(sample.target)})
            return s.model_copy(update={"answer": sample.choices[s.answer]})
        # Generations from elsewhere (`evalsuite score --samples`) may run on into the next
        # few-shot question and its answer, or keep an end-of-turn token: cut them where
        # this task's generation stops.
        completions = [cut_at_stop(c, [*config.stop, *END_OF_TURN])[0] for c in output.completions]
        if len(completions) > 1:
            return vote_score(
                completions,
                lambda text: _vote_answer(text, sample, cot),
                lambda answer: answer is not None and is_correct(answer, answer, sample.target, sample.subtask),
                "exact_match",
            )
        text = completions[0]
        reading = read(text, sample.subtask, sample.input["input"], chain_of_thought=cot)
        correct = is_correct(text, reading.answer, sample.target, sample.subtask)
        return Score(
            metrics={"exact_match": float(correct), "answer_found": float(reading.answer is not None)},
            answer=reading.answer,
            detail=reading.detail,
        )

    return Task(
        name="bbh",
        version="1.0",
        samples=samples,
        request=request,
        score=per_item(score),
        aggregate=lambda results: aggregate_means(results, "acc" if mc else "exact_match", "macro", notes=notes),
        dataset=source.info(),
        params={"variant": variant, "shots": n_shots, "subtasks": chosen, "fewshot_as_chat": fewshot_as_chat,
                "self_consistency": self_consistency, "temperature": temperature if self_consistency > 1 else None},
        template_hashes={**templates.hashes, **prompt_hashes},
        generation=None if mc else config,
        notes=notes,
    )


def mc_choices(subtask: str, question: str) -> list[str]:
    """The closed answer set of an MC-scorable subtask, in the target's spelling."""
    fmt = answer_format(subtask)
    if fmt is Format.BINARY:
        return list(BINARY_WORDS[subtask])
    if fmt is Format.INTEGER:  # object_counting: targets 0-18 (lm-eval leaderboard_bbh)
        return [str(n) for n in range(19)]
    return [f"({letter})" for letter in options(question)]


def _vote_answer(text: str, sample: Sample, cot: bool) -> str | None:
    """What a sampled completion votes for: its extracted answer, or for the
    three option-text targets the answer text itself (as ``is_correct`` reads it)."""
    answer = extract(text, sample.subtask, sample.input["input"], chain_of_thought=cot)
    if answer_format(sample.subtask) is Format.CHOICE and not sample.target.startswith("("):
        span = answer_span(text) or text.strip().split("\n")[0].strip()
        return span or None
    return answer


def cot_prompt_text(subtask: str) -> str:
    """The official cot-prompts/<subtask>.txt of suzgunmirac/BIG-Bench-Hard @ 9ee07bd, as shipped."""
    return (resources.files(__package__) / PROMPTS_DIR / f"{subtask}.txt").read_bytes().decode("utf-8")


def _cot_prompt(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(task description, [(question, worked answer)]) of an official cot-prompts file."""
    body = text.split("\n-----\n", 1)[1]  # drop the canary line
    description, *blocks = body.split("\n\nQ: ")
    shots = []
    for block in blocks:
        question, _, answer = block.partition("\nA: ")
        shots.append((question.strip(), answer.strip()))
    return description.strip(), shots


def _final_answer(worked: str) -> str:
    return worked.rsplit(ANSWER_IS, 1)[-1].rstrip(".").strip()
