"""What a task reports about its judge: parse errors, position bias, length bias, win rates.

Computed from the :class:`~evalsuite.records.Judgment` records kept in every
judged sample's score, so ``results.json`` can always be rebuilt from
``samples.jsonl``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from evalsuite.metrics import ratio_stderr
from evalsuite.records import (
    Correlation,
    JudgingSummary,
    Judgment,
    MetricValue,
    PairwiseOutcome,
    SampleResult,
    ScoreStatus,
)

if TYPE_CHECKING:
    from evalsuite.judging.judge import Judge

# Points for the evaluated model (candidate a) per combined pairwise verdict: ties count half.
OUTCOME_POINTS = {"a": 1.0, "tie": 0.5, "b": 0.0}
BOOTSTRAP_ROUNDS = 10_000


def combine_orders(first: Judgment, second: Judgment) -> tuple[str | None, bool]:
    """MT-Bench's rule for a pair judged in both orders: (verdict, consistent).

    Both verdicts in the candidates' own terms (``a`` / ``b`` / ``tie``); when
    they disagree the pair is a tie.  ``None`` when either order has no
    verdict: half a pair is not a decision.
    """
    if first.status is not ScoreStatus.SCORED or second.status is not ScoreStatus.SCORED:
        return None, False
    if first.verdict == second.verdict:
        return str(first.verdict), True
    return "tie", False


def first_position_won(j: Judgment) -> bool:
    return (j.verdict == "a" and not j.swapped) or (j.verdict == "b" and j.swapped)


def grade(j: Judgment) -> float | None:
    """A judgment's grade as one number (rubrics: the mean of numeric criteria)."""
    if j.status is not ScoreStatus.SCORED:
        return None
    if isinstance(j.verdict, (int, float)):
        return float(j.verdict)
    if isinstance(j.verdict, dict):
        numbers = [v for v in j.verdict.values() if isinstance(v, (int, float))]
        return float(np.mean(numbers)) if numbers else None
    return None


def spearman(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Spearman's rank correlation (scipy.stats.spearmanr), None when undefined."""
    from scipy.stats import spearmanr

    n = len(x)
    if n < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return Correlation(method="spearman", rho=None, p_value=None, n=n)
    result = spearmanr(x, y)
    rho, p = float(result.statistic), float(result.pvalue)
    return Correlation(method="spearman", rho=rho if math.isfinite(rho) else None, p_value=p if math.isfinite(p) else None, n=n)


def length_correlation(judgments: Sequence[Judgment]) -> Correlation:
    """Length bias: answer length in characters vs grade, over the scored judgments.

    Single and rubric grades against the answer's length; pairwise verdicts
    (+1 a wins, 0 tie, -1 b wins) against the length difference a - b.
    """
    xs, ys = [], []
    for j in judgments:
        if j.status is not ScoreStatus.SCORED or not j.answer_chars:
            continue
        if j.mode == "pairwise":
            if len(j.answer_chars) == 2:
                xs.append(float(j.answer_chars[0] - j.answer_chars[1]))
                ys.append({"a": 1.0, "tie": 0.0, "b": -1.0}[str(j.verdict)])
        elif (g := grade(j)) is not None:
            xs.append(float(j.answer_chars[0]))
            ys.append(g)
    return spearman(xs, ys)


def judging_summary(
    results: Sequence[SampleResult],
    judge: Judge | None = None,
    outcome: PairwiseOutcome | None = None,
) -> JudgingSummary:
    """Parse-error rate, quoted verdicts, retries, length bias and (pairwise)
    position consistency, first-position win share and tie rate of a task.

    ``judge``: the ``--judge`` handle of a judged task (None when the
    evaluated model is the judge under test, or nothing was judged yet).
    """
    judgments = [j for r in results for j in r.score.judgments]
    errors = sum(j.status is ScoreStatus.PARSE_ERROR for j in judgments)
    summary = JudgingSummary(
        judge=judge.id if judge else None,
        self_judging=judge.info.self_judging if judge else False,
        judgments=len(judgments),
        parse_errors=errors,
        parse_error_rate=errors / len(judgments) if judgments else None,
        quoted_verdicts=sum(j.quoted for j in judgments),
        retried=sum(bool(j.retries) for j in judgments),
        length_correlation=length_correlation(judgments),
        outcome=outcome,
    )
    pairwise = [j for j in judgments if j.mode == "pairwise" and j.status is ScoreStatus.SCORED]
    if not pairwise:
        return summary
    pairs = 0
    consistent = 0
    for r in results:
        by_role: dict[str, list[Judgment]] = {}
        for j in r.score.judgments:
            if j.mode == "pairwise":
                by_role.setdefault(j.role, []).append(j)
        for both in by_role.values():
            if len(both) == 2:
                verdict, same = combine_orders(*both)
                if verdict is not None:
                    pairs += 1
                    consistent += same
    return summary.model_copy(update={
        "position_consistency": consistent / pairs if pairs else None,
        "first_position_win_share": sum(first_position_won(j) for j in pairwise) / len(pairwise),
        "tie_rate": sum(j.verdict == "tie" for j in pairwise) / len(pairwise),
    })


def ratio(hits: Sequence[float], totals: Sequence[float]) -> MetricValue | None:
    """Σhits / Σtotals with the linearised (cluster-robust) standard error of a
    ratio estimator: votes on one item are not independent (Cochran 1977, 6.3)."""
    pairs = [(h, t) for h, t in zip(hits, totals) if t > 0]
    if not pairs:
        return None
    value = sum(h for h, _ in pairs) / sum(t for _, t in pairs)
    return MetricValue(value=value, stderr=ratio_stderr([h for h, _ in pairs], [t for _, t in pairs]))


def pairwise_outcome(per_sample: Sequence[Sequence[float]], opponent: str, inconsistent: int, seed: int = 0) -> PairwiseOutcome | None:
    """Win rate of candidate a over the judged pairs (ties half), with a 95% CI.

    ``per_sample`` holds each sample's pair points (1 win, 0.5 tie, 0 loss);
    the interval is a percentile bootstrap (scipy.stats.bootstrap) that
    resamples samples, since the turns of one sample are not independent;
    for the same reason ``stderr`` is the ratio estimator's (:func:`ratio`)
    over samples, not one that treats turns as independent draws.
    """
    points = [p for sample in per_sample for p in sample]
    if not points:
        return None
    value = float(np.mean(points))
    sums = np.array([sum(s) for s in per_sample if s], dtype=float)
    counts = np.array([len(s) for s in per_sample if s], dtype=float)
    stderr = ratio(sums.tolist(), counts.tolist()).stderr
    low = high = None
    if len(sums) > 1:
        if len(set(points)) == 1:
            low = high = value
        else:
            from scipy.stats import bootstrap

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # degenerate resamples of tiny inputs
                ci = bootstrap(
                    (sums, counts),
                    lambda s, c, axis: s.sum(axis=axis) / c.sum(axis=axis),
                    paired=True,
                    vectorized=True,
                    n_resamples=BOOTSTRAP_ROUNDS,
                    method="percentile",
                    confidence_level=0.95,
                    rng=np.random.default_rng(seed),
                ).confidence_interval
            low, high = float(ci.low), float(ci.high)
    return PairwiseOutcome(
        opponent=opponent,
        wins=sum(p == 1.0 for p in points),
        losses=sum(p == 0.0 for p in points),
        ties=sum(p == 0.5 for p in points),
        inconsistent=inconsistent,
        win_rate=value,
        stderr=stderr,
        ci_low=low,
        ci_high=high,
    )
