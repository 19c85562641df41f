"""Self-consistency (Wang et al., 2022): sample n reasoning paths, vote on the answers.

A task asks for ``n`` sampled chain-of-thought completions per item
(:func:`sampling_config`), extracts an answer from each, and scores the item
with :func:`vote_score`, which reports both

* the metric of the **majority-vote** answer (the self-consistency number), and
* ``<metric>_single``: the **mean single-sample** accuracy over the n samples,
  i.e. what one sampled completion scores on average.

Completions without an extractable answer do not vote; if none has one the
majority answer is None (scored wrong).  Ties go to the answer that reached
the winning count first, so the vote is deterministic for a given sample order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from evalsuite.errors import UserError
from evalsuite.records import GenerationConfig, Score

A = TypeVar("A", bound=Hashable)


def sampling_config(base: GenerationConfig, n: int, temperature: float, seed: int | None) -> GenerationConfig:
    """``base`` turned into n sampled completions (greedy n>1 would repeat one answer)."""
    if n < 1:
        raise UserError(f"self_consistency must be >= 1, got {n}")
    if n == 1:
        return base
    if temperature <= 0:
        raise UserError(f"self-consistency samples n={n} answers and needs temperature > 0, got {temperature}")
    return base.model_copy(update={"n": n, "temperature": temperature, "seed": seed})


def majority(answers: Sequence[A | None]) -> tuple[A | None, int]:
    """The most frequent non-None answer and its count (first to reach it wins ties)."""
    counts: Counter[A] = Counter()
    best, best_count = None, 0
    for a in answers:
        if a is None:
            continue
        counts[a] += 1
        if counts[a] > best_count:
            best, best_count = a, counts[a]
    return best, best_count


def vote_score(
    completions: Sequence[str],
    extract: Callable[[str], A | None],
    correct: Callable[[A | None], bool],
    metric: str,
) -> Score:
    """Score one item from its n completions: majority vote plus mean single-sample accuracy."""
    answers = [extract(c) for c in completions]
    voted, count = majority(answers)
    singles = [float(correct(a)) for a in answers]
    found = [a is not None for a in answers]
    metrics = {
        metric: float(correct(voted)),
        f"{metric}_single": sum(singles) / len(singles),
        "answer_found": sum(found) / len(found),
        "vote_share": count / len(answers),
    }
    # A tie is decided by sample order: say so, with the answers it was decided against.
    tied = [a for a, n in Counter(a for a in answers if a is not None).items() if n == count and a != voted]
    tie = f" (tied with {', '.join(str(_jsonable(a)) for a in tied)}: the first to reach {count} wins)" if tied else ""
    return Score(
        metrics=metrics,
        answer=_jsonable(voted),
        detail=f"votes {count}/{len(answers)}{tie}; samples: {[_jsonable(a) for a in answers]}",
    )


def _jsonable(answer: Any) -> Any:
    if isinstance(answer, (frozenset, set, tuple)):
        return sorted(answer)
    return answer
