"""BIG-Bench Hard: 27 subtasks, 6,511 examples, scored by exact match.

Variants: 3-shot chain-of-thought from the official cot-prompts (default),
3-shot answer-only (shots keep only the final answer, as in the paper), and
zero-shot.  Scores are reported per subtask with their macro mean as the
headline and the size-weighted micro mean beside it.
"""

from __future__ import annotations

from typing import Literal

from evalsuite.data import DataSource
from evalsuite.metrics import aggregate_means
from evalsuite.prompting import Turn, assemble
from evalsuite.records import GenerationConfig, Sample, Score
from evalsuite.task import GenerateRequest, Task, TaskContext, per_item, task
from evalsuite.templates import task_templates
from tasks.bbh.extract import extract, is_correct

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
ANSWER_IS = "So the answer is "
# Stop at the next question; a bare "Q" (lm-eval) also cuts "Queen".
STOPS = ["\n\nQ:", "\nQ:"]


@task(
    "BIG-Bench Hard: 27 hard reasoning subtasks (6,511 items), exact match",
    variants={
        "cot": "3-shot chain-of-thought from the official prompts (default)",
        "fewshot": "3-shot answer-only",
        "zeroshot": "zero-shot answer-only",
    },
)
def bbh(
    ctx: TaskContext,
    variant: Literal["cot", "fewshot", "zeroshot"] = "cot",
    shots: int | None = None,
    subtasks: list[str] | None = None,
    fewshot_as_chat: bool = False,
    max_new_tokens: int | None = None,
) -> Task:
    cot = variant == "cot"
    n_shots = (0 if variant == "zeroshot" else 3) if shots is None else shots
    if not 0 <= n_shots <= 3:
        from evalsuite.errors import UserError

        raise UserError(f"bbh.shots must be between 0 and 3 (the official prompts have 3), got {n_shots}")
    chosen = subtasks or SUBTASKS
    for name in chosen:
        if name not in SUBTASKS:
            from evalsuite.errors import unknown_name

            raise unknown_name("bbh subtask", name, SUBTASKS)

    templates = task_templates(__file__)
    source = DataSource("bbh", ctx.data_dir, hub_id="lukaemon/bbh")
    samples: list[Sample] = []
    prompts: dict[str, tuple[str, list[Turn]]] = {}
    for name in chosen:
        rows = (
            source.json_rows(f"{name}.json", field="examples", required=("input", "target"))
            if source.local
            else source.hub_rows(name, "test", required=("input", "target"))
        )
        description, examples = _cot_prompt(source.read_text(f"cot-prompts/{name}.txt") if source.local else "")
        shots = [
            Turn(
                templates.render("question.j2", input=q),
                templates.render("shot_answer.j2", cot=cot, reasoning=a, target=_final_answer(a)),
            )
            for q, a in examples[:n_shots]
        ]
        prompts[name] = (description, shots)
        samples += [
            Sample(id=f"{name}/{i}", subtask=name, input={"input": r["input"]}, target=r["target"])
            for i, r in enumerate(rows)
        ]

    config = GenerationConfig(max_new_tokens=max_new_tokens or (512 if cot else 64), stop=STOPS)

    def request(sample: Sample) -> GenerateRequest:
        description, shots = prompts[sample.subtask]
        prompt = assemble(
            ctx,
            instruction=description,
            shots=shots,
            query=templates.render("question.j2", input=sample.input["input"]),
            answer_prefix=templates.render("answer_prefix.j2", cot=cot),
            fewshot_as_chat=fewshot_as_chat,
        )
        return GenerateRequest(prompt, config)

    def score(sample: Sample, output) -> Score:
        text = output.completions[0]
        answer = extract(text, sample.subtask, sample.input["input"], chain_of_thought=cot)
        correct = is_correct(text, answer, sample.target, sample.subtask)
        return Score(
            metrics={"exact_match": float(correct), "answer_found": float(answer is not None)},
            answer=answer,
            detail=None if answer is not None else "no answer found in the output",
        )

    return Task(
        name="bbh",
        version="1.0",
        samples=samples,
        request=request,
        score=per_item(score),
        aggregate=lambda results: aggregate_means(results, "exact_match", "macro"),
        dataset=source.info(),
        params={"variant": variant, "shots": n_shots, "subtasks": chosen, "fewshot_as_chat": fewshot_as_chat},
        template_hashes=templates.hashes,
        generation=config,
    )


def _cot_prompt(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(task description, [(question, worked answer)]) of an official cot-prompts file."""
    if not text:
        return "", []
    body = text.split("\n-----\n", 1)[1]  # drop the canary line
    description, *blocks = body.split("\n\nQ: ")
    shots = []
    for block in blocks:
        question, _, answer = block.partition("\nA: ")
        shots.append((question.strip(), answer.strip()))
    return description.strip(), shots


def _final_answer(worked: str) -> str:
    return worked.rsplit(ANSWER_IS, 1)[-1].rstrip(".").strip()
