"""TinyStories "GPT-Eval" (Eldan & Li 2023, arXiv 2305.07759): story completions graded by a judge.

The model continues each of the 44 story beginnings (``n`` completions per
beginning, sampled at ``temperature``; the paper's 10 at temperature 1 by
default).  The judge gets the paper's two-turn conversation: first a free
assessment of the part after the ``***`` separator, then, with that
assessment in context, grades for grammar, creativity and consistency with
the beginning (1-10 each; plot too when it gives one) and a guess of the
writer's age group (A: 3 or under ... F: 13-16).

Scores are averaged over a beginning's graded completions, then over
beginnings (the paper's order), each dimension with its stderr over
beginnings; ``overall`` is the mean of the three required dimensions.  The
age-group distribution over all graded completions is in ``notes``.

Prompting: ``completion`` continues the raw text (base models such as the
TinyStories models); ``instruct`` asks a chat model to continue it
(``auto``: instruct when the model has a chat template).  The raw beginning,
unmodified, is what the judge sees before ``***``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Literal

import yaml

from evalsuite.data import DataSource
from evalsuite.errors import UserError
from evalsuite.judging import Criterion, JudgeCall, judging_summary, rubric
from evalsuite.judging.judge import require_judge
from evalsuite.metrics import aggregate_means
from evalsuite.prompting import assemble
from evalsuite.records import GenerationConfig, Message, ModelOutput, Sample, SampleResult, Score, ScoreStatus, TaskResult
from evalsuite.task import GenerateRequest, NonNegativeFloat, PositiveInt, Probability, Task, TaskContext, task
from evalsuite.templates import task_templates

PROMPTS_FILE = "Evaluation prompts.yaml"
DIMENSIONS = ("grammar", "creativity", "consistency")
AGE_GROUPS = {"A": "3 or under", "B": "4-5", "C": "6-7", "D": "8-9", "E": "10-12", "F": "13-16"}
GRADES = rubric([
    *(Criterion(d) for d in DIMENSIONS),
    Criterion("plot", required=False),
    Criterion("age group", labels=tuple(AGE_GROUPS), aliases=("age",), required=False),
])
JUDGE_TEMPLATES = ("assessment.j2", "grading.j2")
SCORE_CHUNK = 4  # beginnings per judge batch (4 x n two-turn judge conversations)


@task(
    "TinyStories GPT-Eval: continue 44 story beginnings; a judge grades grammar, creativity, consistency (1-10) "
    "and guesses the age group",
    variants={"completion": "continue the raw text (base models)", "instruct": "ask a chat model to continue it"},
    judged=True,
)
def tinystories(
    ctx: TaskContext,
    n: PositiveInt = 10,
    temperature: NonNegativeFloat = 1.0,
    top_p: Probability = 1.0,
    max_new_tokens: PositiveInt = 512,
    mode: Literal["auto", "completion", "instruct"] = "auto",
) -> Task:
    if n < 1:
        raise UserError(f"tinystories.n must be at least 1, got {n}")
    if n > 1 and temperature == 0:
        raise UserError(f"tinystories.n={n} needs sampling (temperature > 0): greedy decoding repeats one completion")
    instruct = mode == "instruct" or (mode == "auto" and ctx.chat)
    source = DataSource("tinystories", ctx.data_dir, hub_id=None)
    if not source.local:
        raise UserError(f"tinystories: pass --data-dir DIR (or set EVALSUITE_DATA_DIR) where DIR/tinystories/ holds "
                        f"'{PROMPTS_FILE}'")
    beginnings = yaml.safe_load(source.read_text(PROMPTS_FILE))
    if not isinstance(beginnings, list) or not all(isinstance(b, str) for b in beginnings):
        raise UserError(f"{source.root}/{PROMPTS_FILE}: expected a list of story beginnings")
    templates = task_templates(__file__)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=n,
                              seed=ctx.seed if temperature > 0 else None)

    def request(sample: Sample) -> GenerateRequest:
        beginning = sample.input["beginning"]
        if instruct:
            query = templates.render("continue.j2", beginning=beginning.rstrip())
            return GenerateRequest(assemble(ctx, instruction=None, shots=[], query=query), config)
        return GenerateRequest(beginning.rstrip(" "), config)  # a trailing space would end the prompt mid-token

    def calls(sample: Sample, output: ModelOutput) -> list[JudgeCall]:
        beginning = sample.input["beginning"]
        out = []
        for j, text in enumerate(output.completions):
            completion = continuation(beginning, text) if instruct else text
            first = templates.render("assessment.j2", beginning=beginning, completion=completion)
            out.append(JudgeCall(
                role=f"completion_{j + 1}", mode="rubric", template="assessment.j2+grading.j2",
                messages=(Message(role="user", content=first),), followups=(templates.render("grading.j2"),),
                parser=GRADES, material=(beginning, completion), answer_chars=(len(completion),),
            ))
        return out

    def score(items: Sequence[tuple[Sample, ModelOutput]]) -> Iterator[Score]:
        per_sample = [calls(s, o) for s, o in items]
        judgments = require_judge(ctx.judge, "tinystories")([c for cs in per_sample for c in cs])
        start = 0
        for cs in per_sample:
            mine, start = judgments[start : start + len(cs)], start + len(cs)
            graded = [j.verdict for j in mine if j.status is ScoreStatus.SCORED]
            if not graded:
                yield Score(status=ScoreStatus.PARSE_ERROR, judgments=mine, answer=[j.verdict for j in mine],
                            detail=f"no grades in {len(mine)} judge replies; first: {mine[0].detail if mine else ''}")
                continue
            metrics = {d: sum(g[d] for g in graded) / len(graded) for d in DIMENSIONS}
            metrics["overall"] = sum(metrics[d] for d in DIMENSIONS) / len(DIMENSIONS)
            plots = [g["plot"] for g in graded if "plot" in g]
            if plots:
                metrics["plot"] = sum(plots) / len(plots)
            metrics["graded_completions"] = float(len(graded))
            yield Score(metrics=metrics, judgments=mine, answer=[j.verdict for j in mine])

    def aggregate(results: Sequence[SampleResult]) -> TaskResult:
        ages: Counter[str] = Counter()
        for r in results:
            for j in r.score.judgments:
                if j.status is ScoreStatus.SCORED and isinstance(j.verdict, dict):
                    group = j.verdict.get("age group")
                    ages[f"{group} ({AGE_GROUPS[group]})" if group else "not given"] += 1
        notes = {"age_groups": dict(sorted(ages.items())), "averaging": "over a beginning's graded completions, then over beginnings"}
        result = aggregate_means(results, "overall", notes=notes)
        return result.model_copy(update={"judging": judging_summary(results, ctx.judge)})

    hashes = templates.hashes
    return Task(
        name="tinystories",
        version="1.0",
        samples=[Sample(id=str(i), input={"beginning": b}, target=None) for i, b in enumerate(beginnings)],
        request=request,
        score=score,
        aggregate=aggregate,
        dataset=source.info(),
        params={"n": n, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
                "mode": "instruct" if instruct else "completion"},
        template_hashes={k: v for k, v in hashes.items() if k == "continue.j2" and instruct},
        generation=config,
        score_chunk=SCORE_CHUNK,
        judge_templates={k: hashes[k] for k in JUDGE_TEMPLATES},
    )


def continuation(beginning: str, reply: str) -> str:
    """A chat model's continuation without a repeated copy of the beginning."""
    head = beginning.rstrip()
    stripped = reply.lstrip()
    if stripped.startswith(head):
        return stripped[len(head):]
    return reply
