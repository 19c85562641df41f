"""LLM-as-judge grading, shared by every judged task.

* :mod:`~evalsuite.judging.verdicts` -- parsers for the three grading modes
  (``rating`` single score, ``choice`` pairwise A/B/tie, ``rubric`` named
  criteria), bound to the judge's own final verdict.
* :mod:`~evalsuite.judging.judge` -- the judge handle (``TaskContext.judge``):
  batching, the judgment log that makes resumes free, retries on record.
* :mod:`~evalsuite.judging.stats` -- parse-error rate, position consistency,
  length bias, win rate with a bootstrap CI.
* :mod:`~evalsuite.judging.builder` -- a whole rubric-graded task over a JSONL
  of prompts in one call (see examples/).
"""

from evalsuite.judging.judge import Judge, JudgeCall, make_judgment, replies_of
from evalsuite.judging.stats import combine_orders, judging_summary, pairwise_outcome
from evalsuite.judging.verdicts import PAIRWISE_LABELS, Criterion, Parsed, choice, rating, rubric

__all__ = [
    "PAIRWISE_LABELS",
    "Criterion",
    "Judge",
    "JudgeCall",
    "Parsed",
    "choice",
    "combine_orders",
    "judging_summary",
    "make_judgment",
    "pairwise_outcome",
    "rating",
    "replies_of",
    "rubric",
]
