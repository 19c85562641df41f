"""Expected outputs of HumanEval+ inputs, computed once in the sandbox.

The release file stores inputs only (as EvalPlus does); the expected output
of each input is what the canonical solution returns.  They are computed in
the sandbox -- the canonical solutions are code like any other -- and cached
on disk keyed by the dataset's content hash, together with the canonical
runtime of every input, from which the per-input time limits derive.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.backends.models import cache_dir
from evalsuite.sandbox import ExecStatus, Sandbox
from tasks.humaneval.execution import IoSpec, run_io
from tasks.humaneval.oracle import tag, untag

VERSION = "2"  # bump when the harness, the digest or the cache layout changes
GT_INPUT_LIMIT_S = 60.0  # per input while computing expected outputs
GT_JOB_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Expected:
    outputs: dict[str, list[Any]]  # "base" / "plus" -> expected outputs
    times: dict[str, list[float]]  # canonical runtime per input, seconds
    error: str | None = None  # the canonical solution itself failed


def cache_path(content_hash: str) -> Path:
    return cache_dir() / "humaneval_plus" / f"expected-v{VERSION}-{content_hash[:32]}.json"


def load_or_compute(
    problems: dict[str, dict[str, Any]],
    content_hash: str,
    sandbox_factory: Callable[[], Sandbox],
    wanted: Iterable[str] | None = None,
) -> dict[str, Expected]:
    """Expected outputs of ``wanted`` problems (default: all), computing and
    caching only those not cached yet (a ``--limit 3`` run computes 3)."""
    path = cache_path(content_hash)
    cached: dict[str, Expected] = {}
    if path.is_file():
        try:
            cached = {tid: e for tid, e in _load(path).items() if tid in problems}
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            cached = {}  # unreadable or truncated: recompute and overwrite
    want = set(problems) if wanted is None else set(wanted)
    missing = {tid: p for tid, p in problems.items() if tid in want and tid not in cached}
    if missing:
        print(f"humaneval_plus: computing expected outputs of {len(missing)} problems with the canonical "
              f"solutions (once; cached in {path})", file=sys.stderr)
        fresh = compute(missing, sandbox_factory())
        good = {tid: e for tid, e in fresh.items() if e.error is None}  # never cache a failure
        if good:
            _save(path, {**cached, **good})
        cached.update(fresh)
    return cached


def compute(problems: dict[str, dict[str, Any]], sandbox: Sandbox) -> dict[str, Expected]:
    specs = [
        IoSpec(f"gt|{tid}|{split}", p["prompt"] + p["canonical_solution"], p["entry_point"],
               p[f"{split}_input"], [GT_INPUT_LIMIT_S] * len(p[f"{split}_input"]))
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
            outputs[split], times[split] = merged.outputs, merged.times
        out[tid] = Expected(outputs, times, "; ".join(errors) or None)
    return out


def _save(path: Path, expected: dict[str, Expected]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        tid: {"outputs": {k: [tag(v) for v in vs] for k, vs in e.outputs.items()}, "times": e.times}
        for tid, e in expected.items()
    }
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


def _load(path: Path) -> dict[str, Expected]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {
        tid: Expected({k: [untag(v) for v in vs] for k, vs in e["outputs"].items()}, e["times"])
        for tid, e in doc.items()
    }
