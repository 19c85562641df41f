"""`evalsuite gate` on real run directories written by `evalsuite run`.

The mock backend answers from a replies file (prompt substring -> reply), so
we control exactly which BBH samples each "checkpoint" gets right: a baseline
at ~75%, a candidate with a few flips either way (noise: must pass), one that
loses 60 more samples (must fail), one with generation errors, and runs that
evaluated something else (must be refused as not comparable).
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest

from evalsuite.gate import gate as gate_command
from evalsuite.records import SampleResult
from evalsuite.rundir import RunDir
from evalsuite.stats import holm, mcnemar_exact, paired_binary, paired_bootstrap
from tests.conftest import evalsuite, finish_runs, start_evalsuite

LIMIT = "10"  # 27 subtasks × 10 = 270 paired samples


def question_key(sample: SampleResult) -> str:
    """The sample's own question (the last 'Q:' block): unique to its prompt."""
    if isinstance(sample.prompt, str):
        text = sample.prompt
    else:  # chat: the last user turn (an assistant turn may prefill the answer cue)
        text = next(m.content for m in reversed(sample.prompt) if m.role == "user")
    return text[text.rfind("\n\nQ: ") + 2:]


def replies(samples: list[SampleResult], wrong: set[int], path: Path) -> Path:
    path.write_text(json.dumps({
        question_key(s): "So the answer is " + ("(Z) none" if i in wrong else str(s.target)) + "."
        for i, s in enumerate(samples)
    }))
    return path


def start(data_dir: Path, out: Path, *args: str) -> subprocess.Popen:
    return start_evalsuite("run", "--model", "mock:org/tiny", "--tasks", "bbh",
                           "--data-dir", str(data_dir), "-o", str(out), *args)


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("gate")
    seed = finish_runs({"seed": (tmp / "seed", start(data_dir, tmp / "seed", "--limit", LIMIT))})["seed"]
    samples = RunDir.existing(seed).samples()
    assert len(samples) == 270
    rng = random.Random(7)
    idx = list(range(len(samples)))
    wrong = set(rng.sample(idx, 68))  # baseline ≈ 75%
    right = [i for i in idx if i not in wrong]
    flipped = (wrong | set(right[:3])) - set(sorted(wrong)[:2])  # 3 lost, 2 gained
    worse = wrong | set(right[:60])
    files = {
        "base": replies(samples, wrong, tmp / "base.json"),
        "noisy": replies(samples, flipped, tmp / "noisy.json"),
        "worse": replies(samples, worse, tmp / "worse.json"),
    }
    variants = {
        "base": ["--limit", LIMIT, "-M", f"replies={files['base']}"],
        "base_again": ["--limit", LIMIT, "-M", f"replies={files['base']}"],
        "noisy": ["--limit", LIMIT, "-M", f"replies={files['noisy']}"],
        "worse": ["--limit", LIMIT, "-M", f"replies={files['worse']}"],
        "errors": ["--limit", LIMIT, "-M", f"replies={files['base']}", "-M", "fail_every=9"],
        "other": ["--limit", "9", "-T", "shots=2", "-M", f"replies={files['base']}"],
    }
    return finish_runs({name: (tmp / name, start(data_dir, tmp / name, *args)) for name, args in variants.items()})


def gate(runs, candidate: str, *extra: str, baseline: str = "base", cli: bool = False):
    """Run the gate: through the real CLI (exit codes as CI sees them) or, being
    faster, in-process via click's runner (same command object, same sys.exit)."""
    args = ["--baseline", str(runs[baseline]), "--candidate", str(runs[candidate]), *extra]
    if cli:
        return evalsuite("gate", *args)
    result = CliRunner().invoke(gate_command, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, "")


def row(proc: subprocess.CompletedProcess) -> list[str]:
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("| bbh ")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_identical_runs_pass(runs):
    proc = gate(runs, "base_again", cli=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = row(proc)
    assert "PASS" in proc.stdout
    assert cells[3] == cells[4]  # baseline == candidate
    assert cells[5].startswith("±0.0") and cells[6] == "1.000"


def test_a_few_flipped_samples_out_of_hundreds_pass(runs):
    proc = gate(runs, "noisy")
    assert proc.returncode == 0, proc.stdout
    cells = row(proc)
    assert "McNemar exact (3 lost, 2 gained)" in cells[7]
    assert float(cells[6]) > 0.05
    assert "no significant change" in cells[9]


def test_clearly_regressed_candidate_fails(runs, tmp_path):
    comment = tmp_path / "comment.md"
    proc = gate(runs, "worse", "--output", str(comment), cli=True)
    assert proc.returncode == 1, proc.stdout
    cells = row(proc)
    assert cells[6] == "<0.001" and "regressed" in cells[9]
    low, high = (float(x.replace("−", "-")) for x in cells[5].split("[")[1].rstrip("]").split(","))
    assert high < 0  # the whole CI of the delta is below zero
    assert comment.read_text() == proc.stdout  # the PR comment is the printed summary


def test_allowed_drop_and_minimum(runs):
    # A ~22-point drop is tolerated with --max-drop 30 ...
    proc = gate(runs, "worse", "--max-drop", "30")
    assert proc.returncode == 0, proc.stdout
    assert "within tolerance" in row(proc)[9]
    # ... but not when the candidate falls below an absolute floor.
    proc = gate(runs, "worse", "--max-drop", "30", "--min", "bbh=60")
    assert proc.returncode == 1
    assert "below minimum" in row(proc)[9] and "below the minimum 60" in proc.stdout


def test_unscored_samples_are_reported_and_can_be_gated(runs):
    errors = RunDir.existing(runs["errors"]).samples()
    n_errors = sum(s.score.status.value != "scored" for s in errors)
    assert n_errors > 0
    proc = gate(runs, "errors", "--max-drop", "100")
    assert row(proc)[8] == f"0→{n_errors}"
    assert proc.returncode == 0, proc.stdout  # reported, not gated
    proc = gate(runs, "errors", "--max-drop", "100", "--max-unscored-increase", "1")
    assert proc.returncode == 1
    assert "more unscored" in row(proc)[9]


def test_runs_of_different_samples_or_prompts_are_not_comparable(runs):
    proc = gate(runs, "other", cli=True)
    assert proc.returncode == 3, proc.stdout
    assert "NOT COMPARABLE" in proc.stdout
    assert "sample sets differ (27 only in baseline" in proc.stdout
    assert "task parameters differ (shots: 3 vs 2)" in proc.stdout


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--min", "bbh"], "--min expects TASK=POINTS"),
        (["--min", "mmlu=40"], "--min names task(s) not in the runs: mmlu"),
    ],
)
def test_bad_arguments_are_one_line_errors(runs, extra, needle):
    proc = gate(runs, "base_again", *extra, cli=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and needle in proc.stderr


def test_not_a_run_directory(runs, tmp_path):
    proc = evalsuite("gate", "--baseline", str(runs["base"]), "--candidate", str(tmp_path))
    assert proc.returncode == 2 and "not an evalsuite run directory" in proc.stderr


# -- the statistics themselves ---------------------------------------------------------


def test_mcnemar_exact_matches_the_binomial():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(4, 0) == pytest.approx(2 * 0.5**4)
    assert mcnemar_exact(3, 2) == 1.0
    for b, c in [(20, 2), (1, 7), (37, 12), (100, 130), (5000, 5300)]:
        assert mcnemar_exact(b, c) == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)


def test_paired_binary_interval_contains_zero_only_when_not_significant():
    base = np.ones(270)
    few = base.copy()
    few[:4] = 0
    r = paired_binary(base, few)
    assert r.p_value > 0.05 and r.ci_low < 0 < r.ci_high
    many = base.copy()
    many[:80] = 0
    r = paired_binary(base, many)
    assert r.p_value < 0.001 and r.ci_high < 0 and r.delta == pytest.approx(-80 / 270)


def test_paired_bootstrap_uses_macro_weights_with_strata():
    # Subtask 0 has 90 items that all improve by 0.5, subtask 1 has 10 unchanged.
    base = np.full(100, 0.25)
    cand = base.copy()
    cand[:90] += 0.5
    strata = np.array([0] * 90 + [1] * 10)
    macro = paired_bootstrap(base, cand, strata)
    assert macro.delta == pytest.approx(0.25)  # (0.5 + 0) / 2, not the micro 0.45
    assert macro.p_value < 0.01
    same = paired_bootstrap(base, base.copy())
    assert same.delta == 0 and same.p_value == 1.0


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_correction_keeps_two_borderline_drops_from_failing():
    from evalsuite.gate import TaskComparison, decide
    from evalsuite.stats import PairedResult

    def comps():
        return [TaskComparison(t, "acc", "micro", PairedResult("paired-bootstrap", 0.5, 0.45, -0.05, -0.09, -0.01, p, 400),
                               (0, 0)) for t, p in (("a", 0.03), ("b", 0.04))]

    corrected = comps()
    decide(corrected, alpha=0.05, max_drop=0, minimums={}, max_unscored_increase=None, correction="holm")
    assert [c.p_adjusted for c in corrected] == pytest.approx([0.06, 0.06])
    assert not any(c.failures for c in corrected)
    raw = comps()
    decide(raw, alpha=0.05, max_drop=0, minimums={}, max_unscored_increase=None, correction="none")
    assert all(c.failures and "regressed" in c.verdict for c in raw)
