"""All 164 canonical HumanEval solutions pass in the sandbox; broken ones fail."""

from __future__ import annotations

import pytest

from evalsuite.sandbox import ExecJob, ExecStatus

from tests.sandbox_fixtures import humaneval_problems, humaneval_program, sb  # noqa: F401

pytestmark = pytest.mark.docker


def test_all_canonical_solutions_pass(sb):
    problems = humaneval_problems()
    assert len(problems) == 164
    jobs = [ExecJob(p["task_id"], humaneval_program(p), timeout_s=10.0) for p in problems]
    results = {r.id: r for r in sb.run(jobs)}
    assert set(results) == {p["task_id"] for p in problems}
    bad = {k: (r.status.value, r.detail) for k, r in results.items()
           if r.status is not ExecStatus.PASSED}
    assert bad == {}


def test_wrong_solutions_fail(sb):
    problems = humaneval_problems()[:20]
    # An empty body returns None: every check must reject it.
    jobs = [ExecJob(p["task_id"], p["prompt"] + "    return None\n\n" + p["test"] + "\n"
                    + f"check({p['entry_point']})", timeout_s=10.0) for p in problems]
    results = list(sb.run(jobs))
    assert len(results) == 20
    assert all(r.status is ExecStatus.FAILED for r in results), [
        (r.id, r.status.value, r.detail) for r in results if r.status is not ExecStatus.FAILED]
