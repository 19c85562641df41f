"""EvalPlus's output oracle, applied on the host.

Expected outputs come from running the canonical solution in the sandbox
(:mod:`tasks.humaneval.execution`); candidate outputs come back as plain
builtins, so ``==`` here is the builtin one and an object that claims to equal
everything never reaches this module.  The rules follow EvalPlus's
``unsafe_execute``: exact match, else ``np.allclose(rtol=1e-7, atol)`` with the
same type and length; float outputs with ``atol == 0`` use 1e-6 (and, as in
EvalPlus, that tolerance then sticks for the rest of the input list);
HumanEval/32 (``find_zero``) passes iff ``abs(_poly(*inp, out)) <= atol``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tasks.humaneval.execution import Digest, digest

FIND_ZERO_TASK = "HumanEval/32"


def _poly(xs: list, x: float) -> float:
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def is_floats(x: Any) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def first_mismatch(
    task_id: str, inputs: Sequence[Any], outputs: Sequence[Any], expected: Sequence[Any], atol: float
) -> int | None:
    """Index of the first output that fails the oracle, or None if all pass.

    ``outputs`` may be shorter than ``inputs`` (the program stopped early);
    the first missing index is then the mismatch.
    """
    for i, exp in enumerate(expected):
        if i >= len(outputs):
            return i
        out = outputs[i]
        if task_id == FIND_ZERO_TASK:
            if not _root_ok(inputs[i], out, atol):
                return i
            continue
        exact = _equal(out, exp)
        if atol == 0 and is_floats(exp):
            atol = 1e-6  # EvalPlus rebinds atol here, so it sticks for later inputs
        if not exact and atol != 0:
            if not _close(out, exp, atol):
                return i
        elif not exact:
            return i
    return None


def _equal(out: Any, exp: Any) -> bool:
    try:
        if isinstance(out, Digest) or isinstance(exp, Digest):
            return digest(out) == digest(exp)
        return bool(out == exp)
    except Exception:  # e.g. RecursionError on deeply nested values
        return False


def _close(out: Any, exp: Any, atol: float) -> bool:
    try:
        if type(out) is not type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return bool(np.allclose(out, exp, rtol=1e-07, atol=atol))
    except Exception:  # non-numeric values: not close
        return False


def _root_ok(inp: Sequence[Any], out: Any, atol: float) -> bool:
    try:
        return abs(_poly(*inp, out)) <= atol
    except Exception:
        return False
