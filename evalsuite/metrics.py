"""Aggregation of per-sample scores into task results, with standard errors."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Literal

import numpy as np

from evalsuite.records import MetricValue, SampleResult, ScoreStatus, SubtaskResult, TaskResult


def mean_stderr(values: Sequence[float]) -> MetricValue:
    """Mean with the closed-form standard error sample_std / sqrt(n) (Bessel)."""
    n = len(values)
    if n == 0:
        return MetricValue(value=float("nan"), stderr=None)
    arr = np.asarray(values, dtype=float)
    stderr = float(arr.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    return MetricValue(value=float(arr.mean()), stderr=stderr)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of the Codex paper: 1 - C(n-c, k) / C(n, k), computed stably."""
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
    unweighted mean over subtasks) and ``m_micro`` (size-weighted).
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
    for m in metric_names:
        micro = mean_stderr(values(scored, m))
        if subtasks:
            per = [s.metrics[m] for s in subtasks.values() if m in s.metrics]
            macro = MetricValue(
                value=float(np.mean([p.value for p in per])),
                # Subtask means are independent: the variance of their mean.
                stderr=None
                if any(p.stderr is None for p in per)
                else math.sqrt(sum(p.stderr**2 for p in per)) / len(per),
            )
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
    )
