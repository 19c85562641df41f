"""Multiple choice by log-likelihood, for base models (no generation, no parsing).

Each option is scored as a continuation of the shared context (one
:class:`ChoiceRequest` per item; the HF backend runs the context once).

* ``acc``: the option with the highest summed log-probability is a gold option;
* ``acc_norm``: the same after dividing each log-probability by the length
  of the option in **characters**, the option as the task lists it, without
  the delimiter that precedes its continuation ("True", not " True").  This is
  lm-eval's ``acc_norm`` (``api/task.py``, ``process_results``:
  ``completion_len = len(choice)`` over ``doc_to_choice(doc)``), which removes
  the bias toward short options.  With equal-length options ("(A)", "(B)") it
  equals ``acc``.

Gold may hold several options (multi-answer items count as correct when the
top option is any gold one, as in lm-eval).  Ties go to the first option.
An option whose text equals a gold option's is gold too: the model cannot tell
two identical continuations apart (they tie, and the tie would otherwise go
to whichever comes first, scoring a correct pick 0 or 1 by position).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from evalsuite.records import LoglikelihoodResult, Score


def choice_score(result: LoglikelihoodResult, choices: Sequence[str], gold: Collection[int]) -> Score:
    """``acc``/``acc_norm`` of one item; ``answer`` is the index chosen by ``acc``.

    ``choices`` are the options without their continuation delimiter (the
    continuation of "True" is " True", its length for ``acc_norm`` is 4);
    ``result.logprobs`` holds one summed log-probability per option, in order.
    Raises ValueError when the two counts differ, a gold index is not an option or an
    option is empty.
    """
    lps = result.logprobs
    if len(lps) != len(choices):
        raise ValueError(f"{len(lps)} log-likelihoods for {len(choices)} options")
    if not all(0 <= i < len(choices) for i in gold):
        raise ValueError(f"gold {sorted(gold)} names no option of {len(choices)}")
    if any(not c.strip() for c in choices):
        # Its continuation is the delimiter alone (" "), likely the likeliest: it would
        # win acc for a reason that has nothing to do with the question.
        raise ValueError(f"empty option {[c for c in choices if not c.strip()][0]!r} among {len(choices)}")
    gold_texts = {choices[i] for i in gold}
    gold = {i for i, c in enumerate(choices) if c in gold_texts}
    best = _argmax(lps)
    norm = [lp / max(1, len(c)) for lp, c in zip(lps, choices)]
    best_norm = _argmax(norm)
    return Score(
        metrics={"acc": float(best in gold), "acc_norm": float(best_norm in gold)},
        answer=best,
        detail=f"acc_norm picks {best_norm}",
    )


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))
