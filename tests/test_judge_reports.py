"""Judged results on the leaderboard (judge ids, judge diagnostics, win-rate matrix,
Bradley–Terry ratings) and in the CI gate (paired bootstrap, same judge required)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from leaderboards.ratings import Matchup, bradley_terry, win_matrix
from tests.conftest import evalsuite, finish_runs, start_evalsuite

CANDIDATES = {"strong": "Sx", "weak": "Wx", "even": "Ex"}


def _judge_file(tmp: Path) -> Path:
    judge = {}
    for layout_a, layout_b in (("Assistant A's Answer]\n", "Assistant B's Answer]\n"), ("### Assistant A:\n", "### Assistant B:\n")):
        judge |= {layout_a + "Sx": "[[A]]", layout_b + "Sx": "[[B]]",  # strong wins in either position
                  layout_a + "Wx": "[[B]]", layout_b + "Wx": "[[A]]"}  # weak loses in either position
    judge[""] = "[[A]]"  # even: the first position always wins, so every pair flips: ties
    path = tmp / "judge.json"
    path.write_text(json.dumps(judge))
    return path


@pytest.fixture(scope="module")
def pairwise_runs(data_dir, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pairwise")
    judge = _judge_file(tmp)
    procs = {}
    for i, (model, reply) in enumerate(CANDIDATES.items()):
        out = tmp / str(i)
        procs[model] = (out, start_evalsuite(
            "run", "--model", f"mock:{model}", "-M", f"reply={reply}", "--tasks", "mtbench", "-T", "grading=pairwise",
            "-T", "categories=stem,humanities", "--limit", "1", "--judge", "mock:judge", "-J", f"replies={judge}",
            "--data-dir", str(data_dir), "-o", str(out)))
    return finish_runs(procs)


def test_site_shows_judges_diagnostics_and_pairwise_ratings(pairwise_runs, tmp_path):
    site = tmp_path / "site"
    proc = evalsuite("leaderboard", "build", *map(str, pairwise_runs.values()), "--out", str(site))
    assert proc.returncode == 0, proc.stderr
    index = (site / "index.html").read_text()
    assert index.count('<span class="judge" title="graded by the LLM judge judge">⚖ judge</span>') == 3
    assert "Pairwise</a>" in index
    (task_page,) = site.glob("tasks/mtbench-*.html")
    page = task_page.read_text()
    for column in ("Parse errors", "Length ρ", "Position consistency", "First-position wins", "Win rate vs baseline"):
        assert column in page
    assert "0.0%" in page and "100.0%" in page  # position consistency of "even" and "strong"
    pairwise = (site / "pairwise.html").read_text()
    ranking = [name for name in ("strong", "gpt-3.5-turbo", "even", "weak") if name in pairwise]
    assert ranking == ["strong", "gpt-3.5-turbo", "even", "weak"]
    assert pairwise.index(">strong<") < pairwise.index(">gpt-3.5-turbo<") < pairwise.index(">weak<")
    assert "strong vs gpt-3.5-turbo: 4 won, 0 lost, 0 tied" in pairwise
    assert "even vs gpt-3.5-turbo: 0 won, 0 lost, 4 tied" in pairwise


def test_bradley_terry_matches_the_closed_form_and_counts_ties_half():
    # Two models: the rating gap is 400·log10(odds).
    (a, b) = bradley_terry([Matchup("a", "b", 75, 25, 0)], rounds=20)
    assert a.model == "a" and a.rating - b.rating == pytest.approx(400 * math.log10(3), abs=0.5)
    assert (a.rating + b.rating) / 2 == pytest.approx(1000)
    assert a.ci_low < a.rating < a.ci_high
    # 50 wins and 50 ties = 75 % of the points: the same gap.
    (c, d) = bradley_terry([Matchup("c", "d", 50, 0, 50)], rounds=20)
    assert c.rating - d.rating == pytest.approx(400 * math.log10(3), abs=0.5)
    matrix = win_matrix([Matchup("c", "d", 50, 0, 50)])
    assert matrix[("c", "d")] == (0.75, 100) and matrix[("d", "c")] == (0.25, 100)


def test_bradley_terry_rank_counts_only_clearly_better_models():
    ratings = bradley_terry([Matchup("x", "y", 200, 10, 0), Matchup("y", "z", 51, 49, 0)], rounds=50)
    ranks = {r.model: r.rank for r in ratings}
    assert ranks["x"] == 1 and ranks["y"] == ranks["z"] == 2  # y and z are statistically tied


@pytest.fixture(scope="module")
def graded_runs(data_dir, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("graded")
    judge = tmp / "judge.json"
    judge.write_text(json.dumps({"Base answer": "Rating: [[6]]", "Cand answer. Which": "no verdict here",
                                 "Cand answer": "Rating: [[4]]"}))
    model = tmp / "cand.json"
    # The candidate's answer to the stem question confuses the judge: no verdict.
    model.write_text(json.dumps({"quantum": "Cand answer. Which?", "": "Cand answer."}))
    procs = {}
    for name, model_args in (("base", ["-M", "reply=Base answer."]), ("cand", ["-M", f"replies={model}"])):
        out = tmp / name
        procs[name] = (out, start_evalsuite(
            "run", "--model", f"mock:{name}", *model_args, "--tasks", "mtbench", "--limit", "1",
            "--judge", "mock:judge", "-J", f"replies={judge}", "--data-dir", str(data_dir), "-o", str(out)))
    return finish_runs(procs)


def test_gate_compares_judged_scores_with_the_paired_bootstrap(graded_runs, data_dir):
    proc = evalsuite("gate", "--baseline", str(graded_runs["base"]), "--candidate", str(graded_runs["cand"]))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # 6 -> 4 on every judged question
    (row,) = [line for line in proc.stdout.splitlines() if line.startswith("| mtbench")]
    assert "paired bootstrap" in row and "−2.0" in row and "regressed" in row
    assert "graded by the LLM judge `judge` in both runs" in proc.stdout


def test_gate_leaves_out_pairs_without_a_verdict_and_counts_them(graded_runs):
    proc = evalsuite("gate", "--baseline", str(graded_runs["base"]), "--candidate", str(graded_runs["cand"]),
                     "--max-drop", "5")
    (row,) = [line for line in proc.stdout.splitlines() if line.startswith("| mtbench")]
    cells = [c.strip() for c in row.split("|")]
    assert cells[3] == "7" and cells[9] == "0→1"  # 8 questions, one without a judge verdict
    assert "1 samples without a judge verdict in either run left out" in proc.stdout
    assert proc.returncode == 0
    strict = evalsuite("gate", "--baseline", str(graded_runs["base"]), "--candidate", str(graded_runs["cand"]),
                       "--max-drop", "5", "--max-unscored-increase", "5")
    assert strict.returncode == 1 and "unscored rate rose" in strict.stdout


def test_gate_refuses_scores_from_different_judges(graded_runs, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"": "Rating: [[6]]"}))
    proc = evalsuite("judge", "--run", str(graded_runs["cand"]), "--judge", "mock:other", "-J", f"replies={other}",
                     "-o", str(tmp_path / "rejudged"))
    assert proc.returncode == 0, proc.stderr
    (rejudged,) = (tmp_path / "rejudged").iterdir()
    gate = evalsuite("gate", "--baseline", str(graded_runs["base"]), "--candidate", str(rejudged))
    assert gate.returncode == 3
    assert "judged by different judges" in gate.stdout


def test_bradley_terry_never_compares_models_that_no_battle_connects():
    """a-b and c-d-e met only among themselves; f and g never played: two rated groups, no rating for f or g."""
    ratings = bradley_terry([Matchup("a", "b", 90, 10, 0), Matchup("c", "d", 60, 40, 0), Matchup("d", "e", 30, 10, 10),
                             Matchup("f", "g", 0, 0, 0)], rounds=20)
    by_model = {r.model: r for r in ratings}
    assert set(by_model) == {"a", "b", "c", "d", "e"}  # no made-up 1000 ± 0 for models without battles
    assert {by_model[m].group for m in "cde"} == {1} and {by_model[m].group for m in "ab"} == {2}  # largest first
    for group in ({"a", "b"}, {"c", "d", "e"}):  # each group anchored on its own mean
        assert sum(by_model[m].rating for m in group) / len(group) == pytest.approx(1000)
    assert by_model["a"].rank == 1 and by_model["b"].rank == 2  # ranks count only the model's own group
    assert [r.model for r in ratings][:3] == sorted("cde", key=lambda m: -by_model[m].rating)
    # The closed form inside a group is untouched by the other group.
    assert by_model["a"].rating - by_model["b"].rating == pytest.approx(400 * math.log10(9), abs=0.5)
    assert bradley_terry([Matchup("f", "g", 0, 0, 0)]) == []
    assert bradley_terry([Matchup("f", "f", 3, 1, 0)]) == []  # a model against itself (its own run as baseline)


@pytest.mark.parametrize(
    "per_sample, win_rate, stderr, ci",
    [
        ([[1.0, 0.0], [0.0, 1.0]], 0.5, 0.0, (0.5, 0.5)),  # every sample even: no spread between samples
        ([[1.0, 1.0], [0.0, 0.0]], 0.5, 0.5, (0.0, 1.0)),  # two samples, not four independent turns
        ([[1.0, 0.5]], 0.75, None, (None, None)),  # one sample: no spread to estimate
        ([[0.5, 0.5], [0.5]], 0.5, 0.0, (0.5, 0.5)),  # all ties, zero decisive votes
        ([[], [1.0]], 1.0, None, (None, None)),  # a sample with no decided pair does not count
    ],
)
def test_win_rate_stderr_and_ci_both_treat_samples_as_the_unit(per_sample, win_rate, stderr, ci):
    from evalsuite.judging import pairwise_outcome

    outcome = pairwise_outcome(per_sample, "base", inconsistent=0)
    assert outcome.win_rate == win_rate
    assert outcome.stderr == (pytest.approx(stderr) if stderr is not None else None)
    assert (outcome.ci_low, outcome.ci_high) == ci
    assert outcome.wins + outcome.losses + outcome.ties == sum(map(len, per_sample))
    assert pairwise_outcome([[], []], "base", inconsistent=0) is None
