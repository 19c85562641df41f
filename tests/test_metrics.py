"""Aggregation math checked against direct computations."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from evalsuite.metrics import aggregate_means, mean_stderr, pass_at_k
from evalsuite.records import SampleResult, Score, ScoreStatus


def test_mean_stderr_is_bessel_corrected():
    values = [1, 0, 1, 1, 0, 1, 1, 1]
    got = mean_stderr(values)
    assert got.value == pytest.approx(np.mean(values))
    assert got.stderr == pytest.approx(np.std(values, ddof=1) / math.sqrt(len(values)))


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (5, 2, 2), (6, 3, 4), (10, 9, 3), (4, 4, 4)])
def test_pass_at_k_equals_enumeration_of_k_subsets(n, c, k):
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(combinations(outcomes, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_pass_at_k_needs_k_samples():
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def _result(sub, value, status=ScoreStatus.SCORED):
    return SampleResult(task="t", sample_id=f"{sub}/{id(object())}", subtask=sub,
                        score=Score(status=status, metrics={"em": value} if status == ScoreStatus.SCORED else {}))


def test_macro_and_micro_with_unscored_samples_excluded_and_counted():
    results = [_result("a", 1.0)] * 1 + [_result("a", 0.0)] * 3 + [_result("b", 1.0)] * 2
    results.append(_result("b", 0.0, ScoreStatus.GENERATION_ERROR))
    agg = aggregate_means(results, "em", "macro")
    assert agg.metrics["em_macro"].value == pytest.approx((0.25 + 1.0) / 2)
    assert agg.metrics["em_micro"].value == pytest.approx(3 / 6)
    assert agg.metrics["em"] == agg.metrics["em_macro"]
    assert agg.headline == "em" and agg.headline_aggregation == "macro"
    assert agg.status_counts == {"scored": 6, "generation_error": 1}
    assert agg.subtasks["b"].n_samples == 3 and agg.subtasks["b"].metrics["em"].value == 1.0
    se_a = agg.subtasks["a"].metrics["em"].stderr
    assert agg.metrics["em_macro"].stderr == pytest.approx(math.sqrt(se_a**2 + 0.0) / 2)
