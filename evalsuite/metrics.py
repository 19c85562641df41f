"""Aggregation of per-sample scores into task results, with standard errors."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np

from evalsuite.records import CI_LEVEL, MetricValue, SampleResult, ScoreStatus, SubtaskResult, TaskResult, wilson_interval
from evalsuite.stats import is_binary


def mean_stderr(values: Sequence[float]) -> MetricValue:
    """Mean, closed-form standard error sample_std / sqrt(n) (Bessel), and a 95 % interval.

    The interval is Wilson's when every value is 0 or 1 (a proportion), else
    mean ± z·stderr, cut to [0, 1] when every value lies in [0, 1] (a mean of
    fractions such as pass@k at n > 1 cannot leave it); with one value there is
    no stderr and no normal interval.  Raises ValueError for no values.
    """
    n = len(values)
    if n == 0:  # a mean of nothing is not a score
        raise ValueError("mean_stderr: no values")
    arr = np.asarray(values, dtype=float)
    stderr = float(arr.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    return _with_interval(float(arr.mean()), stderr, n, proportion=is_binary(arr), fractions=_fractions(arr))


def ratio_stderr(sums: Sequence[float], counts: Sequence[float]) -> float | None:
    """Standard error of the ratio estimator sum(sums) / sum(counts) over k
    clusters (cluster i: ``sums[i]`` over ``counts[i]`` units), linearised:
    sqrt(k/(k-1) * sum((y_i - r*n_i)^2)) / sum(n_i) (Cochran 1977, Sampling
    Techniques, sec. 6.3).  The units of a cluster (two turns of one question,
    votes on one item) are not independent draws.  None for fewer than 2 clusters."""
    k = len(sums)
    if k < 2:
        return None
    total = float(sum(counts))
    value = sum(sums) / total
    return math.sqrt(k / (k - 1) * sum((y - value * n) ** 2 for y, n in zip(sums, counts))) / total


def clustered_mean(groups: Sequence[Sequence[float]]) -> MetricValue:
    """Mean over every value of ``groups`` with its cluster-robust stderr
    (:func:`ratio_stderr`; clustered standard errors as in Miller 2024, "Adding Error Bars to Evals")
    and a 95 % interval: normal, or for proportions Wilson's at the effective
    sample size n * (srs stderr / clustered stderr)^2 (Kish's design effect).
    With one value per group this is :func:`mean_stderr`.  Empty groups are
    skipped; raises ValueError for no values."""
    kept = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not kept:
        raise ValueError("clustered_mean: no values")
    values = np.concatenate(kept)
    simple = mean_stderr(values)
    stderr = ratio_stderr([float(g.sum()) for g in kept], [len(g) for g in kept])
    n_eff = float(len(values))
    if stderr and simple.stderr:
        n_eff *= (simple.stderr / stderr) ** 2
    return _with_interval(simple.value, stderr, n_eff, proportion=is_binary(values), fractions=_fractions(values))


def _fractions(*arrays: np.ndarray) -> bool:
    """Whether every value lies in [0, 1]."""
    return all(bool(((a >= 0.0) & (a <= 1.0)).all()) for a in arrays)


def _with_interval(value: float, stderr: float | None, n: float, proportion: bool, fractions: bool) -> MetricValue:
    if proportion:
        return MetricValue(value=value, stderr=stderr, ci=wilson_interval(value, n), ci_method="wilson", n=n)
    if stderr is None:
        return MetricValue(value=value, stderr=None, n=n)
    z = NormalDist().inv_cdf(0.5 + CI_LEVEL / 2)
    low, high = value - z * stderr, value + z * stderr
    if fractions:
        low, high = max(0.0, low), min(1.0, high)
    return MetricValue(value=value, stderr=stderr, ci=(low, high), ci_method="normal", n=n)


def macro_mean(per_subtask: Sequence[Sequence[float]]) -> MetricValue:
    """Unweighted mean over subtasks of their means, with its stderr and interval.

    stderr = sqrt(sum se_i^2) / k for k independent subtask means.  A subtask
    with one value has no variance estimate of its own; it borrows the pooled
    within-subtask variance of the subtasks that have two or more values, or,
    when none has (every subtask at n=1, as under ``--limit 1``), the variance
    of all values together: the collapsed-strata estimator (Cochran 1977,
    Sampling Techniques, sec. 5A.12), which can only overstate the error.  With
    every n_i = 1 this equals the micro mean's stderr, as it should.

    The interval of a macro mean of proportions is Wilson's at Kish's effective
    sample size k^2 / sum(1/n_i) (Kish 1965, Survey Sampling, sec. 11.7), the
    size of a simple random sample with the same variance under equal
    per-item variance; it equals n when all subtasks have the same size.
    Raises ValueError if a subtask has no values.
    """
    groups = [np.asarray(v, dtype=float) for v in per_subtask]
    if any(len(g) == 0 for g in groups):
        raise ValueError("macro_mean: every subtask needs at least one value")
    k = len(groups)
    value = float(np.mean([g.mean() for g in groups]))
    multi = [g for g in groups if len(g) > 1]
    if multi:
        fallback = sum(float(((g - g.mean()) ** 2).sum()) for g in multi) / sum(len(g) - 1 for g in multi)
    else:
        everything = np.concatenate(groups)
        fallback = float(everything.var(ddof=1)) if len(everything) > 1 else None
    variances = [float(g.var(ddof=1)) if len(g) > 1 else fallback for g in groups]
    stderr = None if None in variances else math.sqrt(sum(v / len(g) for v, g in zip(variances, groups))) / k
    n_eff = k * k / sum(1.0 / len(g) for g in groups)
    return _with_interval(value, stderr, n_eff, proportion=is_binary(*groups), fractions=_fractions(*groups))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of the Codex paper: 1 - C(n-c, k) / C(n, k), computed stably.

    Chen et al. (2021), arXiv 2107.03374, fig. 3: 1 - prod_{i=n-c+1}^{n} (1 - k/i);
    n samples of which c passed.  Raises ValueError unless 1 <= k <= n and
    0 <= c <= n (a count outside them would give a number in or beyond [0, 1]
    that means nothing: c > n gave 1.0, k = 0 gave 0.0, k < 0 a negative value).
    """
    if k < 1 or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 1 <= k and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def status_counts(results: Sequence[SampleResult]) -> dict[str, int]:
    return dict(Counter(r.score.status.value for r in results))


def aggregate_means(
    results: Sequence[SampleResult],
    headline_metric: str,
    headline_aggregate: Literal["macro", "micro"] = "macro",
    notes: dict | None = None,
) -> TaskResult:
    """Mean of every per-sample metric, per subtask and over the task.

    Only ``scored`` samples enter the means; the others are counted in
    ``status_counts``.  With subtasks, the task-level value of metric ``m`` is
    reported three ways: ``m`` (the headline aggregate), ``m_macro`` (the
    unweighted mean over subtasks) and ``m_micro`` (size-weighted).  A subtask
    without a scored sample cannot enter the macro mean: a warning names it.
    """
    scored = [r for r in results if r.score.status == ScoreStatus.SCORED]
    by_subtask: dict[str, list[SampleResult]] = defaultdict(list)
    for r in results:
        by_subtask[r.subtask or ""].append(r)
    metric_names = sorted({m for r in scored for m in r.score.metrics})

    def values(rs: Sequence[SampleResult], metric: str) -> list[float]:
        return [r.score.metrics[metric] for r in rs if r.score.status == ScoreStatus.SCORED and metric in r.score.metrics]

    subtasks: dict[str, SubtaskResult] = {}
    if len(by_subtask) > 1 or "" not in by_subtask:
        for name in sorted(by_subtask):
            rs = by_subtask[name]
            subtasks[name] = SubtaskResult(
                n_samples=len(rs),
                metrics={m: mean_stderr(values(rs, m)) for m in metric_names if values(rs, m)},
                status_counts=status_counts(rs),
            )

    metrics: dict[str, MetricValue] = {}
    warnings: list[str] = []
    for m in metric_names:
        micro = mean_stderr(values(scored, m))
        if subtasks:
            counted = [name for name in subtasks if m in subtasks[name].metrics]
            if len(counted) < len(subtasks):  # the macro mean silently meant fewer subtasks
                missing = [name for name in subtasks if name not in counted]
                warnings.append(f"{m}_macro averages {len(counted)} of {len(subtasks)} subtasks: "
                                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} have no scored sample")
            macro = macro_mean([values(by_subtask[name], m) for name in counted])
            metrics[f"{m}_macro"] = macro
            metrics[f"{m}_micro"] = micro
            metrics[m] = macro if headline_aggregate == "macro" else micro
        else:
            metrics[m] = micro
    return TaskResult(
        n_samples=len(results),
        metrics=metrics,
        headline=headline_metric,
        headline_aggregation=headline_aggregate if subtasks else None,
        subtasks=subtasks,
        status_counts=status_counts(results),
        notes=notes or {},
        warnings=warnings,
    )
