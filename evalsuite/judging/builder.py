"""A whole rubric-graded task over a JSONL file of prompts, in one call.

A user's judged task is then a criteria list, a judge template and a
decorated factory (see examples/rubric_task)::

    @task("Helpfulness rubric over my prompts", judged=True)
    def helpfulness(ctx: TaskContext, data: str = "prompts.jsonl") -> Task:
        return rubric_task(ctx, "helpfulness", data, CRITERIA, task_templates(__file__))

The model answers each prompt; the ``--judge`` model grades every answer on
the criteria with the task's ``judge.j2`` template (variables: ``prompt``,
``answer``, ``criteria`` and every field of the row).  Per-sample metrics are
the criteria values and ``score``, their mean; the task reports each mean
with its stderr plus the judging summary (parse-error rate, length bias).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from evalsuite.data import jsonl_objects
from evalsuite.errors import UserError
from evalsuite.judging.judge import JudgeCall, require_judge
from evalsuite.judging.stats import judging_summary
from evalsuite.judging.verdicts import Criterion, rubric
from evalsuite.metrics import aggregate_means
from evalsuite.prompting import assemble
from evalsuite.records import (
    DatasetInfo,
    GenerationConfig,
    Message,
    ModelOutput,
    Sample,
    SampleResult,
    Score,
    ScoreStatus,
    TaskResult,
)
from evalsuite.task import GenerateRequest, Task, TaskContext
from evalsuite.templates import Templates


def read_prompts(path: Path) -> tuple[list[Sample], DatasetInfo]:
    """Samples of a JSONL file: one object per line with a string ``prompt``
    (and optionally ``id``; other fields are kept for the template)."""
    rows, raw = jsonl_objects(path, required=("prompt",))
    samples = []
    for where, row in rows:
        if not isinstance(row["prompt"], str):
            raise UserError(f"{where}: field 'prompt' must be a string")
        samples.append(Sample(id=str(row.get("id", where.rpartition(":")[2])), input=row, target=None))
    if len({s.id for s in samples}) != len(samples):
        raise UserError(f"{path}: duplicate ids")
    info = DatasetInfo(source=str(path.resolve()), content_hash=hashlib.sha256(raw).hexdigest(), n_rows=len(samples))
    return samples, info


def rubric_task(
    ctx: TaskContext,
    name: str,
    data: str,
    criteria: Sequence[Criterion],
    templates: Templates,
    *,
    judge_template: str = "judge.j2",
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    version: str = "1.0",
) -> Task:
    """A judged task: the model answers ``data``'s prompts, the judge grades each
    answer on ``criteria`` (``UserError`` for bad data, or when scoring without ``--judge``)."""
    samples, dataset = read_prompts(Path(data).expanduser())
    parser = rubric(criteria)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                              seed=ctx.seed if temperature > 0 else None)
    numeric = [c.name for c in criteria if not c.labels]
    if not numeric:
        raise UserError(f"{name}: a rubric task needs at least one numeric criterion for its score")

    def request(sample: Sample) -> GenerateRequest:
        return GenerateRequest(assemble(ctx, instruction=None, shots=[], query=sample.input["prompt"]), config)

    def call(sample: Sample, answer: str) -> JudgeCall:
        text = templates.render(judge_template, **{**sample.input, "answer": answer, "criteria": criteria})
        return JudgeCall(role="answer", mode="rubric", template=judge_template, messages=(Message(role="user", content=text),),
                         parser=parser, material=(sample.input["prompt"], answer), answer_chars=(len(answer),))

    def score(items: Sequence[tuple[Sample, ModelOutput]]) -> Iterator[Score]:
        judgments = require_judge(ctx.judge, name)([call(s, o.completions[0] if o.completions else "") for s, o in items])
        for j in judgments:
            if j.status is not ScoreStatus.SCORED:
                yield Score(status=ScoreStatus.PARSE_ERROR, detail=j.detail, judgments=[j])
                continue
            values = {k: float(v) for k, v in j.verdict.items() if k in numeric}
            if not values:  # only optional numeric criteria, none given: nothing to average
                yield Score(status=ScoreStatus.PARSE_ERROR, answer=j.verdict, judgments=[j],
                            detail=f"no numeric criterion graded ({', '.join(numeric)}); found {j.verdict}")
                continue
            yield Score(metrics={**values, "score": sum(values.values()) / len(values)}, answer=j.verdict, judgments=[j])

    def aggregate(results: Sequence[SampleResult]) -> TaskResult:
        result = aggregate_means(results, "score")
        return result.model_copy(update={"judging": judging_summary(results, ctx.judge)})

    return Task(
        name=name,
        version=version,
        samples=samples,
        request=request,
        score=score,
        aggregate=aggregate,
        dataset=dataset,
        params={"data": data, "max_new_tokens": max_new_tokens, "temperature": temperature,
                "criteria": [c.name for c in criteria]},
        template_hashes=templates.hashes,
        generation=config,
        score_chunk=16,
        judge_templates={judge_template: templates.hashes[judge_template]},
    )
