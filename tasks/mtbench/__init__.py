"""MT-Bench (Zheng et al. 2023, arXiv 2306.05685), graded by an LLM judge as FastChat does.

``mtbench``: the model answers 80 two-turn questions; turn 2 is asked with
turn 1's question and the model's own answer in context.  Answers use
FastChat's per-category temperatures (writing/roleplay 0.7, stem/humanities
0.1, the rest greedy) and at most 1,024 new tokens.

* ``grading=single`` (default): the judge rates each turn 1-10 with FastChat's
  8 judge prompts, reference-guided (GPT-4's answers) for math, reasoning and
  coding.  Headline: the mean over all turn scores (160 for the full set),
  with turn-1 and turn-2 means and a per-category breakdown, each with stderr.
* ``grading=pairwise``: every turn is compared with a baseline's answer, in
  both orders (a verdict that flips with position is a tie).  ``baseline`` is
  one of the six answer files (``-T baseline=gpt-3.5-turbo``) or an mtbench
  run directory.  Headline: win rate with ties counted half, with wins,
  losses, ties and a 95% bootstrap CI.

``mtbench_human_agreement`` measures a judge (the evaluated model) against the
3,355 expert votes, see :mod:`tasks.mtbench.agreement`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from evalsuite.compound import ConversationRequest
from evalsuite.data import DataSource
from evalsuite.errors import UserError, unknown_name
from evalsuite.judging import combine_orders, judging_summary, pairwise_outcome
from evalsuite.judging.judge import require_judge
from evalsuite.judging.stats import OUTCOME_POINTS
from evalsuite.metrics import clustered_mean, mean_stderr, status_counts
from evalsuite.prompting import assemble
from evalsuite.records import (
    DatasetInfo,
    GenerationConfig,
    Judgment,
    ModelOutput,
    Sample,
    SampleResult,
    Score,
    ScoreStatus,
    SubtaskResult,
    TaskResult,
)
from evalsuite.task import NonNegativeFloat, PositiveInt, Task, TaskContext, task
from tasks.mtbench.calls import MTBenchJudging
from tasks.mtbench.data import (
    ANSWER_FILES,
    CATEGORIES,
    REFERENCES,
    TEMPERATURES,
    answers,
    judge_prompts,
    questions,
    run_answers,
)

SCORE_CHUNK = 16  # questions per judge batch (32 single / 64 pairwise judge calls)


@task(
    "MT-Bench: 80 two-turn questions, 8 categories, graded by an LLM judge (1-10, or pairwise vs a baseline)",
    variants={"single": "each turn rated 1-10 (default)", "pairwise": "each turn vs a baseline's answer, both orders"},
    judged=True,
)
def mtbench(
    ctx: TaskContext,
    grading: Literal["single", "pairwise"] = "single",
    baseline: str = "gpt-3.5-turbo",
    categories: list[str] | None = None,
    max_new_tokens: PositiveInt = 1024,
    temperature: NonNegativeFloat | None = None,
) -> Task:
    for c in categories or ():
        if c not in CATEGORIES:
            raise unknown_name("mtbench category", c, CATEGORIES)
    source = DataSource("mtbench", ctx.data_dir, hub_id=None)
    if not source.local:
        raise UserError("mtbench: pass --data-dir DIR (or set EVALSUITE_DATA_DIR) where DIR/mtbench/ holds FastChat's "
                        "question.jsonl, judge_prompts.jsonl and reference_answer/gpt-4.jsonl")
    chosen = [q for q in questions(source) if not categories or q.category in categories]
    judging = MTBenchJudging(judge_prompts(source), answers(source, REFERENCES))
    opponent, against, notes = None, {}, {}
    if grading == "pairwise":
        opponent, against, extra_hash = _baseline(source, baseline)
        missing = [q.id for q in chosen if q.id not in against]
        if missing:
            notes["questions_without_baseline_answer"] = len(missing)
            chosen = [q for q in chosen if q.id in against]
        if not chosen:
            raise UserError(f"mtbench: the baseline {baseline} answers none of the chosen questions")
    by_id = {str(q.id): q for q in chosen}
    info = source.info()
    if grading == "pairwise" and extra_hash:
        info = DatasetInfo(source=info.source, n_rows=info.n_rows,
                           content_hash=hashlib.sha256((info.content_hash + extra_hash).encode()).hexdigest())
    base = GenerationConfig(max_new_tokens=max_new_tokens)

    def config(category: str) -> GenerationConfig:
        t = TEMPERATURES[category] if temperature is None else temperature
        return base.model_copy(update={"temperature": t, "seed": ctx.seed if t > 0 else None})

    def request(sample: Sample) -> ConversationRequest:
        q = by_id[sample.id]
        first = assemble(ctx, instruction=None, shots=[], query=q.turns[0])
        return ConversationRequest(first, (q.turns[1],), config(q.category))

    def score(items: Sequence[tuple[Sample, ModelOutput]]) -> Iterator[Score]:
        calls, spans = [], []
        for sample, output in items:
            q, mine = by_id[sample.id], _turns(output)
            if grading == "single":
                new = judging.single(q, mine)
            else:
                new = judging.pair(q, 1, mine, against[q.id]) + judging.pair(q, 2, mine, against[q.id])
            spans.append((len(calls), len(calls) + len(new)))
            calls += new
        judgments = require_judge(ctx.judge, "mtbench")(calls)
        for lo, hi in spans:
            yield (single_score if grading == "single" else pairwise_score)(judgments[lo:hi])

    def aggregate(results: Sequence[SampleResult]) -> TaskResult:
        outcome = None
        if grading == "pairwise":
            per_sample = [[p for _, p, _ in turn_outcomes(r.score.judgments)] for r in results
                          if r.score.status is ScoreStatus.SCORED]
            inconsistent = sum(not same for r in results for _, _, same in turn_outcomes(r.score.judgments))
            outcome = pairwise_outcome(per_sample, opponent, inconsistent, seed=ctx.seed)
        summary = judging_summary(results, ctx.judge, outcome)
        return aggregate_turns(results, "score" if grading == "single" else "win_rate", notes, summary)

    return Task(
        name="mtbench",
        version="1.0",
        samples=[Sample(id=str(q.id), subtask=q.category, input={"turns": list(q.turns)},
                        target=list(judging.reference(q) or []) or None) for q in chosen],
        request=request,
        score=score,
        aggregate=aggregate,
        dataset=info,
        params={"grading": grading, "baseline": baseline if grading == "pairwise" else None,
                "opponent": opponent, "categories": categories, "max_new_tokens": max_new_tokens,
                "temperatures": {c: TEMPERATURES[c] if temperature is None else temperature for c in CATEGORIES}},
        generation=base,
        score_chunk=SCORE_CHUNK,
        notes=notes,
        judge_templates=judging.hashes,
    )


def _baseline(source: DataSource, baseline: str) -> tuple[str, dict[int, tuple[str, str]], str | None]:
    """(opponent id, its answers, hash of answers read from outside the data dir)."""
    if baseline in ANSWER_FILES:
        return baseline, answers(source, f"model_answer/{baseline}.jsonl"), None
    path = Path(baseline).expanduser()
    if path.is_dir():
        return run_answers(path)
    raise UserError(f"mtbench.baseline must be one of {', '.join(ANSWER_FILES)} or an mtbench run directory, got '{baseline}'")


def _turns(output: ModelOutput) -> tuple[str, ...]:
    return tuple(p.completions[0] if p.completions else "" for p in output.parts) or tuple(output.completions[:1])


def single_score(judgments: list[Judgment]) -> Score:
    """One rating per turn; the sample's ``score`` is the mean of the turns that got one."""
    metrics = {j.role: float(j.verdict) for j in judgments if j.status is ScoreStatus.SCORED}
    answer = [j.verdict for j in judgments]
    if not metrics:
        return Score(status=ScoreStatus.PARSE_ERROR, answer=answer, judgments=judgments,
                     detail="; ".join(f"{j.role}: {j.detail}" for j in judgments))
    return Score(metrics={**metrics, "score": sum(metrics.values()) / len(metrics)}, answer=answer, judgments=judgments)


def turn_outcomes(judgments: Sequence[Judgment]) -> list[tuple[str, float, bool]]:
    """(role, points for candidate a, consistent) per pair decided in both orders."""
    by_role: dict[str, list[Judgment]] = {}
    for j in judgments:
        by_role.setdefault(j.role, []).append(j)
    out = []
    for role, both in by_role.items():
        verdict, same = combine_orders(*both) if len(both) == 2 else (None, False)
        if verdict is not None:
            out.append((role, OUTCOME_POINTS[verdict], same))
    return out


def pairwise_score(judgments: list[Judgment]) -> Score:
    """Points per turn (win 1, tie 0.5, loss 0); ``win_rate`` is their mean."""
    decided = turn_outcomes(judgments)
    answer = {role: {1.0: "win", 0.5: "tie", 0.0: "loss"}[p] + ("" if same else " (inconsistent)")
              for role, p, same in decided}
    if not decided:
        failed = [f"{j.role}{' swapped' if j.swapped else ''}: {j.detail}" for j in judgments
                  if j.status is not ScoreStatus.SCORED]
        return Score(status=ScoreStatus.PARSE_ERROR, judgments=judgments, detail="; ".join(failed))
    metrics = {role: p for role, p, _ in decided}
    return Score(metrics={**metrics, "win_rate": sum(metrics.values()) / len(metrics)}, answer=answer, judgments=judgments)


def aggregate_turns(results: Sequence[SampleResult], headline: str, notes: dict, summary) -> TaskResult:
    """Means over *turns* (FastChat's MT-Bench score), overall and per category; the
    headline's stderr is clustered by question (:func:`~evalsuite.metrics.clustered_mean`)."""

    def metrics(rs: Sequence[SampleResult]) -> dict:
        scored = [r.score.metrics for r in rs if r.score.status is ScoreStatus.SCORED]
        turns = {t: [m[t] for m in scored if t in m] for t in ("turn_1", "turn_2")}
        if not (turns["turn_1"] or turns["turn_2"]):
            return {}  # nothing scored: no mean (not a NaN one)
        # A question's two turns are one draw, not two (its per-turn means are independent).
        out = {headline: clustered_mean([[m[t] for t in ("turn_1", "turn_2") if t in m] for m in scored])}
        out.update({t: mean_stderr(v) for t, v in turns.items() if v})
        return out

    by_category: dict[str, list[SampleResult]] = {}
    for r in results:
        by_category.setdefault(r.subtask or "", []).append(r)
    return TaskResult(
        n_samples=len(results),
        metrics=metrics(results),
        headline=headline,
        subtasks={c: SubtaskResult(n_samples=len(rs), metrics=metrics(rs), status_counts=status_counts(rs))
                  for c, rs in sorted(by_category.items(), key=lambda kv: CATEGORIES.index(kv[0]) if kv[0] in CATEGORIES else 99)},
        status_counts=status_counts(results),
        notes=notes,
        judging=summary,
    )
