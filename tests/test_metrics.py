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


# -- intervals: Wilson for proportions, honest at 0 % and 100 % ------------------------


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (1, 10), (3, 7), (50, 100), (0, 1), (1, 1), (163, 164)])
def test_wilson_interval_equals_scipy(k, n):
    from scipy.stats import binomtest

    from evalsuite.records import wilson_interval

    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k / n, n) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_zero_of_ten_is_zero_to_27_8_points_and_stderr_stays_zero():
    got = mean_stderr([0.0] * 10)
    assert got.ci_method == "wilson" and got.n == 10
    assert got.ci[0] == 0.0 and round(100 * got.ci[1], 1) == 27.8
    assert got.stderr == 0.0  # the stderr is kept as it is
    full = mean_stderr([1.0] * 10)
    assert full.ci[1] == 1.0 and round(100 * full.ci[0], 1) == 72.2


def test_non_binary_metrics_get_a_normal_interval_and_one_value_none():
    values = [0.25, 0.5, 1.0, 0.0]
    got = mean_stderr(values)
    z = 1.959963984540054
    assert got.ci_method == "normal" and got.ci == pytest.approx((got.value - z * got.stderr, got.value + z * got.stderr))
    single = mean_stderr([0.5])
    assert single.stderr is None and single.ci is None
    assert mean_stderr([1.0]).ci == pytest.approx((0.2065, 1.0), abs=1e-4)  # a proportion still has one


def test_a_mean_of_fractions_never_gets_an_interval_past_0_or_1():
    """pass@1 of 2/3 and 1 (n=3 and n=1 samples per problem) was shown as [0.5067, 1.1600]:
    a mean of values in [0, 1] cannot leave [0, 1], so its normal interval is cut there."""
    high = mean_stderr([2 / 3, 1.0])
    assert high.ci_method == "normal" and high.ci[1] == 1.0
    assert high.ci[0] == pytest.approx(high.value - 1.959963984540054 * high.stderr)
    low = mean_stderr([0.0, 0.1, 0.0])
    assert low.ci[0] == 0.0 and 0 < low.ci[1] < 1
    macro = aggregate_means([_result("a", 0.9), _result("a", 1.0), _result("b", 1.0), _result("b", 0.8)],
                            "em", "macro").metrics["em"]
    assert 0.0 <= macro.ci[0] and macro.ci[1] == 1.0
    wide = mean_stderr([2.0, 5.0, 0.5])  # not a fraction: nothing to cut at
    assert wide.ci[0] < 0.0


def test_macro_stderr_with_one_sample_per_subtask_is_the_collapsed_strata_estimate():
    """--limit 1: every subtask n=1 has no variance of its own; the macro still has a stderr."""
    outcomes = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    results = [_result(f"s{i}", v) for i, v in enumerate(outcomes)]
    agg = aggregate_means(results, "em", "macro")
    macro, micro = agg.metrics["em_macro"], agg.metrics["em_micro"]
    assert all(s.metrics["em"].stderr is None for s in agg.subtasks.values())
    assert macro.stderr == pytest.approx(np.std(outcomes, ddof=1) / math.sqrt(len(outcomes)))
    assert macro.stderr == pytest.approx(micro.stderr)
    assert macro.ci_method == "wilson" and macro.n == pytest.approx(9) and macro.ci == pytest.approx(micro.ci)


def test_macro_borrows_pooled_variance_for_single_sample_subtasks_and_uses_kish_n():
    a, b, c = [1.0, 0.0, 1.0, 1.0], [0.0, 0.0], [1.0]
    results = [_result("a", v) for v in a] + [_result("b", v) for v in b] + [_result("c", v) for v in c]
    macro = aggregate_means(results, "em", "macro").metrics["em_macro"]
    pooled = (np.var(a, ddof=1) * 3 + np.var(b, ddof=1) * 1) / 4
    expected = math.sqrt(np.var(a, ddof=1) / 4 + np.var(b, ddof=1) / 2 + pooled / 1) / 3
    assert macro.value == pytest.approx((0.75 + 0.0 + 1.0) / 3)
    assert macro.stderr == pytest.approx(expected)
    n_eff = 9 / (1 / 4 + 1 / 2 + 1 / 1)
    assert macro.n == pytest.approx(n_eff)
    from evalsuite.records import wilson_interval

    assert macro.ci == pytest.approx(wilson_interval(macro.value, n_eff))


def test_results_json_and_summary_carry_the_interval(cli, data_dir, tmp_path):
    from evalsuite.rundir import RunDir

    proc = cli("run", "--model", "mock", "--tasks", "bbh", "--limit", "1", "--data-dir", str(data_dir),
               "-o", str(tmp_path), "-M", "reply=So the answer is (Z).")
    assert proc.returncode == 0, proc.stderr
    (run,) = tmp_path.iterdir()
    headline = RunDir.existing(run).results().tasks["bbh"].metrics["exact_match"]
    assert headline.value == 0.0 and headline.stderr == 0.0
    assert headline.ci_method == "wilson" and headline.ci[0] == 0.0 and headline.ci[1] == pytest.approx(3.8415 / (27 + 3.8415), abs=1e-4)
    assert "95% CI" in proc.stdout and "[0.0000, 0.1246]" in proc.stdout and "Wilson" in proc.stdout


@pytest.mark.parametrize("n,c,k", [(10, 11, 1), (10, -1, 1), (10, 3, 0), (10, 3, -1), (0, 0, 0)])
def test_pass_at_k_refuses_counts_that_mean_nothing(n, c, k):
    # c > n once gave 1.0, k = 0 gave 0.0 and k = -1 gave -0.375: numbers a table would print.
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_is_stable_for_huge_n():
    # C(10^6, 100) overflows floats; the product form must still equal the exact value.
    from fractions import Fraction

    n, c, k = 10**6, 5, 100
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)
    assert pass_at_k(n, 0, k) == 0.0 and pass_at_k(n, n, k) == 1.0 and pass_at_k(n, n - k + 1, k) == 1.0


def test_mean_of_nothing_is_an_error_not_nan():
    with pytest.raises(ValueError):
        mean_stderr([])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_metric_is_refused_when_made_and_when_read(bad):
    # A NaN score was written as null and then made samples.jsonl unreadable; a NaN
    # read back made the gate's bootstrap report p=0.0001 on a nan delta.
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Score(metrics={"exact_match": bad})
    line = '{"task":"t","sample_id":"1","score":{"metrics":{"exact_match":%s}}}'
    for literal in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValidationError):
            SampleResult.model_validate_json(line % literal)
    with pytest.raises(ValidationError), np.errstate(invalid="ignore"):  # inf - inf in the std
        mean_stderr([1.0, bad])


def test_minus_infinite_logprob_round_trips():
    from evalsuite.records import LoglikelihoodResult

    r = SampleResult(task="t", sample_id="1", score=Score(),
                     loglikelihood=LoglikelihoodResult(logprobs=[-1.5, float("-inf")], is_greedy=[True, False], token_counts=[1, 1]))
    assert SampleResult.model_validate_json(r.model_dump_json()) == r
    with pytest.raises(ValueError):
        LoglikelihoodResult(logprobs=[float("nan")], is_greedy=[False], token_counts=[1])


def test_macro_mean_that_leaves_out_a_subtask_says_so():
    # Subtask b has no scored sample (all generation errors): its mean does not exist,
    # so em_macro is the mean of a alone, which was reported as a macro over both.
    results = [_result("a", 1.0)] * 3 + [_result("b", 0.0, ScoreStatus.GENERATION_ERROR)] * 3
    res = aggregate_means(results, "em")
    assert res.metrics["em"].value == 1.0 and res.status_counts == {"scored": 3, "generation_error": 3}
    assert res.warnings == ["em_macro averages 1 of 2 subtasks: b have no scored sample"]
    assert aggregate_means(results[:3] + [_result("b", 0.0)], "em").warnings == []


def test_a_task_with_repeated_sample_ids_is_refused():
    # (task, sample_id) keys resume and the gate's pairing: a repeat silently dropped samples.
    from evalsuite.errors import UserError
    from evalsuite.records import DatasetInfo, Sample
    from evalsuite.task import Task

    samples = [Sample(id=i, input={}, target="x") for i in ("q1", "q2", "q1")]
    with pytest.raises(UserError, match="1 sample ids occur more than once .e.g. q1."):
        Task(name="t", version="1", samples=samples, request=None, score=None, aggregate=None,
             dataset=DatasetInfo(source="s", content_hash="h", n_rows=3))
