"""The gate on runs too small to test, and on runs that differ in how they were scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalsuite.rundir import RunDir
from tests.conftest import evalsuite, finish_runs, start_evalsuite
from tests.test_gate import replies


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory) -> dict[str, Path]:
    """navigate, 4 items: answering "No" gets 3 right, "Yes" 1 (3 lost, 1 gained)."""
    tmp = tmp_path_factory.mktemp("gate-edges")
    out = {}
    for reply in ("No", "Yes"):
        proc = evalsuite("run", "--model", f"mock:org/{reply}", "-T", "subtasks=navigate", "--limit", "4",
                         "-M", f"reply=So the answer is {reply}.", "--data-dir", str(data_dir), "-o", str(tmp / reply))
        assert proc.returncode == 0, proc.stderr
        (out[reply],) = (tmp / reply).iterdir()
    return out


def _gate(base: Path, cand: Path):
    return evalsuite("gate", "--baseline", str(base), "--candidate", str(cand))


def _edit(run: Path, tmp_path: Path, name: str, change) -> Path:
    copy = Path(shutil.copytree(run, tmp_path / "copy"))
    data = json.loads((copy / name).read_text())
    change(data)
    (copy / name).write_text(json.dumps(data))
    return copy


def test_a_drop_too_few_samples_can_show_is_not_reported_as_no_change(runs):
    # 75 -> 25 points on 4 items: McNemar's smallest possible p is 2 * 0.5^4 = 0.125,
    # so the gate can never fail here; it used to say "no significant change".
    proc = _gate(runs["No"], runs["Yes"])
    assert proc.returncode == 0, proc.stdout
    assert "| 75.0 | 25.0 |" in proc.stdout
    assert "too few samples to test" in proc.stdout and "no significant change" not in proc.stdout
    assert "with 4 paired samples no change can be significant at α = 0.05 (the smallest possible p is 0.125)" in proc.stdout


def test_runs_of_different_evalsuite_or_schema_versions_say_so(runs, tmp_path):
    def change(prov):
        prov["evalsuite_version"], prov["schema_version"] = "9.9.9", "1.1"

    proc = _gate(runs["No"], _edit(runs["No"], tmp_path, "run.json", change))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "different schema versions (1.0 vs 1.1)" in proc.stdout
    assert "different evalsuite versions" in proc.stdout and "9.9.9" in proc.stdout


def test_a_different_headline_aggregation_is_not_comparable(runs, tmp_path):
    def change(results):
        results["tasks"]["bbh"]["headline_aggregation"] = "micro"

    proc = _gate(runs["No"], _edit(runs["No"], tmp_path, "results.json", change))
    assert proc.returncode == 3, proc.stdout
    assert "headline aggregation differs (macro vs micro)" in proc.stdout


def test_bootstrap_of_a_few_items_uses_the_exact_sign_flip_p():
    import numpy as np

    from evalsuite.stats import mcnemar_exact, paired_bootstrap, sign_flip_p

    # Two graded items that both dropped 0.5: the bootstrap's resamples are all -0.5,
    # which gave p = 1/n_boot ("significant"); exactly, 2 of the 4 sign patterns are as extreme.
    assert paired_bootstrap(np.array([1.0, 0.8]), np.array([0.5, 0.3])).p_value == 0.5
    # On 0/1 values the sign-flip test is McNemar's exact test.
    for lost, gained in [(5, 1), (7, 0), (3, 3), (9, 2)]:
        d = np.array([-1.0] * lost + [1.0] * gained)
        assert sign_flip_p(d) == pytest.approx(mcnemar_exact(lost, gained))
    # Strata weight the statistic: one item of a stratum of one counts as much as a stratum of ten.
    base, cand = np.zeros(11), np.zeros(11)
    cand[0], cand[1:] = -1.0, 0.1
    strata = np.array([0] + [1] * 10)
    assert paired_bootstrap(base, cand, strata).delta == pytest.approx((-1.0 + 0.1) / 2)
    assert paired_bootstrap(base, cand, strata).p_value == pytest.approx(sign_flip_p(np.array([-0.5] + [0.005] * 10)))


def test_output_path_problems_are_one_error_line_before_any_work(runs, tmp_path):
    # A missing folder is created (it was a traceback after the summary: exit 1, "regressed").
    out = tmp_path / "new" / "dir" / "gate.md"
    proc = evalsuite("gate", "--baseline", str(runs["No"]), "--candidate", str(runs["Yes"]), "--output", str(out))
    assert proc.returncode == 0 and out.read_text() == proc.stdout
    (tmp_path / "file").write_text("")
    bad = evalsuite("gate", "--baseline", str(runs["No"]), "--candidate", str(runs["Yes"]),
                    "--output", str(tmp_path / "file" / "gate.md"))
    assert bad.returncode == 2 and bad.stdout == "" and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: --output ") and len(bad.stderr.strip().splitlines()) == 1


def test_names_cannot_hide_or_forge_parts_of_the_pull_request_comment(runs, tmp_path):
    # "<!--" in a model id hid the rest of the rendered comment, its verdicts included;
    # "@someone" pinged a user.
    def change(prov):
        prov["model"]["id"] = "evil <!-- @someone <b>x</b> | `y`"

    cand = _edit(runs["No"], tmp_path, "run.json", change)
    proc = _gate(runs["No"], cand)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(`evil <!-- @someone <b>x</b> \\| 'y'`)" in proc.stdout  # inside code: shown as typed
    outside_code = proc.stdout.replace("`evil <!-- @someone <b>x</b> \\| 'y'`", "")
    assert "<!--" not in outside_code and "@someone" not in outside_code and "<b>" not in outside_code


def test_subtask_names_are_escaped_in_the_comment(runs, tmp_path):
    base = Path(shutil.copytree(runs["No"], tmp_path / "base"))
    records = [json.loads(line) for line in (base / "samples.jsonl").read_text().splitlines()]
    for i, record in enumerate(records):
        record["subtask"] = "a <!-- @someone" if i % 2 else "b <img src=x>"
    (base / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    proc = _gate(base, runs["Yes"])
    assert "| a &lt;!-- &#64;someone |" in proc.stdout and "| b &lt;img src=x&gt; |" in proc.stdout
    assert "<!--" not in proc.stdout and "<img" not in proc.stdout and "@someone" not in proc.stdout


def test_the_output_folder_instead_of_the_run_directory_names_the_run_inside(runs):
    # `evalsuite run -o DIR` writes DIR/<run-id>/; the gate was given DIR.
    proc = evalsuite("gate", "--baseline", str(runs["No"].parent), "--candidate", str(runs["Yes"]))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"error: {runs['No'].parent} is not an evalsuite run directory (no run.json); "
                                   f"it holds the run directory {runs['No']}")


@pytest.fixture(scope="module")
def at_limits(data_dir, tmp_path_factory) -> dict[str, Path]:
    """navigate, 100 items: all right; 7 wrong (93 %); 43 wrong (57 %); all right
    but 7 generation errors.  7/100 and 57/100 are not exact in binary floating
    point: 7 points came out as 7.000000000000001, 57 % as 56.99999999999999."""
    tmp = tmp_path_factory.mktemp("gate-limits")
    common = ["run", "--model", "mock:org/m", "-T", "subtasks=navigate", "--limit", "100", "--data-dir", str(data_dir)]
    seed = finish_runs({"seed": (tmp / "seed", start_evalsuite(*common, "-o", str(tmp / "seed")))})["seed"]
    samples = RunDir(seed).samples()
    variants = {
        "base": ["-M", f"replies={replies(samples, set(), tmp / 'base.json')}"],
        "minus7": ["-M", f"replies={replies(samples, set(range(7)), tmp / 'minus7.json')}"],
        "at57": ["-M", f"replies={replies(samples, set(range(43)), tmp / 'at57.json')}"],
        "errors7": ["-M", f"replies={tmp / 'base.json'}", "-M", "fail_every=12"],
    }
    runs = finish_runs({name: (tmp / name, start_evalsuite(*common, *args, "-o", str(tmp / name)))
                        for name, args in variants.items()})
    assert RunDir(runs["errors7"]).results().tasks["bbh"].status_counts["generation_error"] == 7
    return runs


def _gate_with(runs: dict[str, Path], candidate: str, *options: str):
    return evalsuite("gate", "--baseline", str(runs["base"]), "--candidate", str(runs[candidate]), *options)


def test_a_drop_of_exactly_the_allowed_points_passes(at_limits):
    proc = _gate_with(at_limits, "minus7", "--max-drop", "7")
    assert proc.returncode == 0, proc.stdout
    assert "dropped within tolerance" in proc.stdout and "−7.0" in proc.stdout
    assert _gate_with(at_limits, "minus7", "--max-drop", "6.99").returncode == 1  # the drop is significant


def test_a_score_of_exactly_the_minimum_passes(at_limits):
    proc = _gate_with(at_limits, "at57", "--min", "bbh=57", "--max-drop", "100")
    assert proc.returncode == 0, proc.stdout
    assert "below the minimum" not in proc.stdout and "| 57.0 |" in proc.stdout
    assert _gate_with(at_limits, "at57", "--min", "bbh=57.01", "--max-drop", "100").returncode == 1


def test_an_unscored_rise_of_exactly_the_allowed_points_passes(at_limits):
    proc = _gate_with(at_limits, "errors7", "--max-unscored-increase", "7", "--max-drop", "7")
    assert proc.returncode == 0, proc.stdout
    assert "| 0→7 |" in proc.stdout
    assert _gate_with(at_limits, "errors7", "--max-unscored-increase", "6.99", "--max-drop", "7").returncode == 1


@pytest.mark.parametrize("option", [["--max-drop", "nan"], ["--alpha", "NaN"], ["--max-unscored-increase", "nan"],
                                    ["--min", "bbh=nan"]])
def test_a_nan_threshold_is_a_usage_error_not_a_pass(at_limits, option):
    # Every comparison with NaN is false: `--max-drop nan` passed a significant
    # drop, `--alpha nan` made nothing significant, and a NaN --min or
    # --max-unscored-increase was silently ignored.
    proc = _gate_with(at_limits, "at57", *option)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith("error: ") and "NaN" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert proc.stdout == ""


def test_a_model_id_with_a_bidi_override_shows_its_codes_in_the_comment(runs, tmp_path):
    # "org/gpt-5\u202elam" displayed as "org/gpt-5mal" in the pull-request comment.
    def change(prov):
        prov["model"]["id"] = "org/gpt-5\u202elam"

    proc = _gate(runs["No"], _edit(runs["No"], tmp_path, "run.json", change))
    assert proc.returncode == 0, proc.stdout
    assert "(`org/gpt-5[U+202E]lam`)" in proc.stdout and "\u202e" not in proc.stdout


def test_a_candidate_that_scored_nothing_fails_whatever_the_statistics(runs, data_dir, tmp_path):
    """Every candidate sample failed (the endpoint was down, the sandbox broken):
    4 items lost is no significant drop, so it passed as 'no significant change'."""
    out = tmp_path / "down"
    proc = evalsuite("run", "--model", "mock:org/No", "-T", "subtasks=navigate", "--limit", "4", "-M", "fail_every=1",
                     "-M", "reply=So the answer is No.", "--data-dir", str(data_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    (down,) = out.iterdir()
    for base in (runs["No"], down):  # also when the baseline scored nothing either
        gate = _gate(base, down)
        assert gate.returncode == 1, gate.stdout
        assert "❌ nothing scored" in gate.stdout
        assert "- **bbh**: no sample was scored in the candidate (4 generation_error)" in gate.stdout


def test_a_run_finished_by_another_evalsuite_version_is_flagged(runs, tmp_path):
    # Since --resume records its continuations, a run made by two versions shows it.
    def change(prov):
        prov["continued"] = [{"command": ["evalsuite", "run", "--resume", "x"], "started_at": prov["started_at"],
                              "evalsuite_version": "9.9.9"}]

    proc = _gate(runs["No"], _edit(runs["No"], tmp_path, "run.json", change))
    assert proc.returncode == 0, proc.stdout
    assert "the candidate was finished by another evalsuite version than started it (" in proc.stdout
    assert "9.9.9" in proc.stdout
