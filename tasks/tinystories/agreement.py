"""``tinystories_human_agreement``: a rubric judge (the evaluated model) against one human grader.

Data: ``tinystories/human_scores/`` -- 450 completions by TinyStories-1M, -8M
and -28M (150 each) in 6 categories, each scored by one person on its
category's criteria (``criteria.csv``) with 0, 0.5 or 1.  The judge grades the
same criteria on the same scale with one rubric prompt per completion.

Reported: per-criterion exact agreement with the human (``agreement_<criterion>``)
and overall (``agreement``, pooled over every graded criterion); mean
absolute difference; Spearman's rho per criterion; and whether the judge
orders the three model sizes as the human does (mean score per model,
Kendall's tau between the two orderings).  A small single-annotator signal,
not a gold standard (data README).  ``--limit N`` keeps N completions per
category (a seeded random subset within each stratum).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from evalsuite.data import DataSource
from evalsuite.errors import UserError
from evalsuite.judging import Criterion, JudgeCall, judging_summary, make_judgment, replies_of, rubric
from evalsuite.judging.judge import cut_short
from evalsuite.judging.stats import spearman
from evalsuite.metrics import mean_stderr, status_counts
from evalsuite.prompting import assemble
from evalsuite.records import (
    GenerationConfig,
    Message,
    MetricValue,
    ModelOutput,
    Sample,
    SampleResult,
    Score,
    ScoreStatus,
    SubtaskResult,
    TaskResult,
)
from evalsuite.task import GenerateRequest, NonNegativeFloat, PositiveInt, Task, TaskContext, stratified_order, task
from evalsuite.templates import task_templates

SCORES_FILE = "human_scores/2025-04-30-manual-scores.csv"
CRITERIA_FILE = "human_scores/criteria.csv"
SCALE = (0.0, 0.5, 1.0)


def _mean(values: list[float]) -> MetricValue | None:
    return mean_stderr(values) if values else None


@dataclass(frozen=True)
class Rubric:
    label: str  # e.g. "A"
    text: str

    @property
    def criterion(self) -> Criterion:
        return Criterion(f"Criterion {self.label}", low=0, high=1, values=SCALE)


def _csv(source: DataSource, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(source.read_text(name).lstrip("\ufeff"))))


@task("Agreement of a rubric judge (the evaluated model) with human scores of 450 TinyStories completions")
def tinystories_human_agreement(ctx: TaskContext, max_new_tokens: PositiveInt = 2048,
                                temperature: NonNegativeFloat = 0.0) -> Task:
    source = DataSource("tinystories", ctx.data_dir, hub_id=None)
    if not source.local:
        raise UserError("tinystories_human_agreement: pass --data-dir DIR (or set EVALSUITE_DATA_DIR) where "
                        f"DIR/tinystories/ holds {SCORES_FILE} and {CRITERIA_FILE}")
    criteria: dict[str, list[Rubric]] = defaultdict(list)
    for row in _csv(source, CRITERIA_FILE):
        criteria[row["category"]].append(Rubric(row["label"], row["text"]))
    rows = _csv(source, SCORES_FILE)
    if not rows or "completion" not in rows[0]:
        raise UserError(f"{source.root}/{SCORES_FILE}: no scored completions")
    unjudgeable: dict[str, int] = defaultdict(int)  # scored criteria without a criterion text
    samples = []
    for row in rows:
        category = row["category"]
        human = {}
        for column, value in row.items():
            if column.startswith(f"{category}_") and column.endswith("_score") and value != "":
                label = column[len(category) + 1 : -len("_score")]
                if any(r.label == label for r in criteria[category]):
                    human[label] = float(value)
                else:
                    unjudgeable[f"{category}_{label}"] += 1
        if human:
            samples.append(Sample(id=row["ID"], subtask=category, target=human,
                                  input={"beginning": row["prompt"], "completion": row["completion"],
                                         "model": row["model_name"]}))
    samples = stratified_order(samples)  # --limit N: N per category, the same in every run
    model_of = {s.id: s.input["model"] for s in samples}
    templates = task_templates(__file__)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                              seed=ctx.seed if temperature > 0 else None)

    def call(sample: Sample) -> JudgeCall:
        rubrics = [r for r in criteria[sample.subtask] if r.label in sample.target]
        text = templates.render("rubric.j2", beginning=sample.input["beginning"], completion=sample.input["completion"],
                                criteria=rubrics)
        return JudgeCall(role="completion", mode="rubric", template="rubric.j2",
                         messages=(Message(role="user", content=text),), parser=rubric([r.criterion for r in rubrics]),
                         material=(sample.input["beginning"], sample.input["completion"]),
                         answer_chars=(len(sample.input["completion"]),))

    def request(sample: Sample) -> GenerateRequest:
        return GenerateRequest(assemble(ctx, instruction=None, shots=[], query=call(sample).messages[0].content), config)

    def score(items: Sequence[tuple[Sample, ModelOutput]]) -> Iterator[Score]:
        for sample, output in items:
            judgment = make_judgment(call(sample), replies_of(output), truncated=cut_short(output))
            if judgment.status is not ScoreStatus.SCORED:
                yield Score(status=ScoreStatus.PARSE_ERROR, judgments=[judgment], detail=judgment.detail)
                continue
            judge = {k.removeprefix("Criterion "): float(v) for k, v in judgment.verdict.items()}
            metrics = {"agreement": sum(judge[k] == v for k, v in sample.target.items()) / len(sample.target),
                       "abs_difference": sum(abs(judge[k] - v) for k, v in sample.target.items()) / len(sample.target)}
            metrics |= {f"judge_{sample.subtask}_{k}": v for k, v in judge.items()}
            yield Score(metrics=metrics, answer=judge, judgments=[judgment])

    def aggregate(results: Sequence[SampleResult]) -> TaskResult:
        pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)  # criterion -> (human, judge)
        per_model: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"human": [], "judge": []})
        by_category: dict[str, list[SampleResult]] = defaultdict(list)
        for r in results:
            by_category[r.subtask or ""].append(r)
            if r.score.status is not ScoreStatus.SCORED:
                continue
            for label, human in r.target.items():
                judge = r.score.metrics[f"judge_{r.subtask}_{label}"]
                pairs[f"{r.subtask}_{label}"].append((human, judge))
                model = model_of[r.sample_id]
                per_model[model]["human"].append(human)
                per_model[model]["judge"].append(judge)
        metrics: dict[str, MetricValue] = {}
        every = [float(h == j) for ps in pairs.values() for h, j in ps]
        if every:
            metrics["agreement"] = _mean(every)
            metrics["abs_difference"] = _mean([abs(h - j) for ps in pairs.values() for h, j in ps])
        for name, ps in sorted(pairs.items()):
            metrics[f"agreement_{name}"] = _mean([float(h == j) for h, j in ps])
        correlations = {name: spearman([h for h, _ in ps], [j for _, j in ps]).model_dump() for name, ps in sorted(pairs.items())}
        means = {m: {k: sum(v) / len(v) for k, v in d.items()} | {"n": len(d["human"])} for m, d in sorted(per_model.items())}
        order = {}
        if len(means) > 1:
            from scipy.stats import kendalltau

            human_order = sorted(means, key=lambda m: -means[m]["human"])
            judge_order = sorted(means, key=lambda m: -means[m]["judge"])
            tau = kendalltau([means[m]["human"] for m in means], [means[m]["judge"] for m in means]).statistic
            order = {"human_order": human_order, "judge_order": judge_order, "order_matches": human_order == judge_order,
                     "kendall_tau": None if tau is None or math.isnan(tau) else float(tau)}
            if order["kendall_tau"] is not None:
                metrics["size_order_kendall_tau"] = MetricValue(value=order["kendall_tau"])
        subtasks = {}
        for category, rs in sorted(by_category.items()):
            hits = [float(h == j) for name, ps in pairs.items() if name.startswith(f"{category}_") for h, j in ps]
            subtasks[category] = SubtaskResult(n_samples=len(rs), status_counts=status_counts(rs),
                                               metrics={"agreement": m} if (m := _mean(hits)) else {})
        return TaskResult(
            n_samples=len(results),
            metrics=metrics,
            headline="agreement",
            subtasks=subtasks,
            status_counts=status_counts(results),
            notes={"model_size_means": means, **order, "spearman_per_criterion": correlations,
                   "scored_criteria_without_text": dict(unjudgeable),
                   "scale": "0 = not met, 0.5 = partly, 1 = fully met (the human's scale)"},
            judging=judging_summary(results),
        )

    return Task(
        name="tinystories_human_agreement",
        version="1.0",
        samples=samples,
        request=request,
        score=score,
        aggregate=aggregate,
        dataset=source.info(),
        params={"max_new_tokens": max_new_tokens, "temperature": temperature},
        template_hashes={"rubric.j2": templates.hashes["rubric.j2"]},
        generation=config,
        judge_templates={"rubric.j2": templates.hashes["rubric.j2"]},
    )
