"""choice_score on real items whose options repeat, and on malformed gold."""

from __future__ import annotations

import pytest

import tasks.agieval as ag
from evalsuite.multiple_choice import choice_score
from evalsuite.records import LoglikelihoodResult
from evalsuite.task import TaskContext
from tests.conftest import DATA_DIR


def _by_id(task, sid):
    return next(s for s in task.samples if s.id == sid)


def test_an_option_identical_to_the_gold_one_is_gold_on_real_aqua_rat():
    # aqua-rat/117 lists 8.75 twice, as (A) and as the gold (C): scored as text,
    # the two continuations are the same string and tie; the tie went to (A),
    # so a model that picked 8.75 scored 0.
    task = ag.agieval_en(TaskContext(data_dir=DATA_DIR), scoring="loglikelihood", choice_format="text",
                         subsets=["aqua-rat"])
    sample = _by_id(task, "aqua-rat/117")
    conts = task.request(sample).continuations
    assert sample.target == ["C"] and conts[0] == conts[2] == " 8.75"
    tied = LoglikelihoodResult(logprobs=[-3.0, -5.0, -3.0, -6.0, -7.0], is_greedy=[False] * 5, token_counts=[2] * 5)
    score = next(iter(task.score([(sample, tied)])))
    assert score.metrics == {"acc": 1.0, "acc_norm": 1.0}
    other = LoglikelihoodResult(logprobs=[-5.0, -3.0, -5.0, -6.0, -7.0], is_greedy=[False] * 5, token_counts=[2] * 5)
    assert next(iter(task.score([(sample, other)]))).metrics == {"acc": 0.0, "acc_norm": 0.0}


def test_letter_options_stay_distinct():
    # "(A)" and "(C)" are different continuations: the duplicate rule must not merge them.
    res = LoglikelihoodResult(logprobs=[-1.0, -2.0], is_greedy=[True, False], token_counts=[1, 1])
    assert choice_score(res, ["(A)", "(B)"], {1}).metrics == {"acc": 0.0, "acc_norm": 0.0}


@pytest.mark.parametrize("gold", [{2}, {-1}])
def test_gold_outside_the_options_is_an_error(gold):
    res = LoglikelihoodResult(logprobs=[-1.0, -2.0], is_greedy=[True, False], token_counts=[1, 1])
    with pytest.raises(ValueError):
        choice_score(res, ["yes", "no"], gold)


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_option_is_an_error_not_a_free_win(empty):
    # Scored as the bare delimiter " ", an empty option often has the highest log-likelihood.
    res = LoglikelihoodResult(logprobs=[-0.1, -2.0], is_greedy=[True, False], token_counts=[1, 1])
    with pytest.raises(ValueError, match="empty option"):
        choice_score(res, [empty, "no"], {1})
