"""Self-consistency: majority vote + mean single-sample accuracy, with BBH and AGIEval."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from evalsuite.errors import UserError
from evalsuite.records import GenerationConfig, ModelOutput
from evalsuite.selfconsistency import majority, sampling_config, vote_score
from evalsuite.task import TaskContext

from tests.conftest import DATA_DIR as DATA
ROOT = Path(__file__).resolve().parents[1]


def test_majority_and_ties():
    assert majority(["B", "A", "B", None, "A"]) == ("B", 2)  # tie: B reached 2 first
    assert majority([None, None]) == (None, 0)
    assert majority(["C"]) == ("C", 1)


def test_vote_score_reports_both_accuracies():
    s = vote_score(["x=1", "x=2", "x=2", "nothing", "x=1", "x=2"], lambda t: t[2:] if t.startswith("x=") else None,
                   lambda a: a == "1", "acc")
    assert s.answer == "2"
    assert s.metrics == {"acc": 0.0, "acc_single": pytest.approx(2 / 6), "answer_found": pytest.approx(5 / 6),
                         "vote_share": pytest.approx(3 / 6)}


def test_sampling_config():
    base = GenerationConfig(max_new_tokens=10, stop=["\n"])
    assert sampling_config(base, 1, 0.7, 1) is base
    cfg = sampling_config(base, 5, 0.7, 1234)
    assert (cfg.n, cfg.temperature, cfg.seed, cfg.stop) == (5, 0.7, 1234, ["\n"])
    with pytest.raises(UserError, match="temperature"):
        sampling_config(base, 5, 0.0, 1)
    with pytest.raises(UserError):
        sampling_config(base, 0, 0.7, 1)


def test_agieval_votes_over_real_items():
    from tasks.agieval import agieval

    task = agieval(TaskContext(data_dir=DATA, chat=False), variant="cot", shots=0, self_consistency=3,
                   subsets=["aqua-rat", "gaokao-mathcloze"])
    assert task.request(task.samples[0]).config.n == 3 and task.generation.temperature == 0.7
    first = {s.subtask: s for s in reversed(task.samples)}
    mc = first["aqua-rat"]  # gold A
    outs = ModelOutput(completions=["... so the answer is (B).", "the answer is (A)", "hmm, the answer is (A)."])
    score = next(iter(task.score([(mc, outs)])))
    assert score.answer == ["A"] and score.metrics["acc"] == 1.0 and score.metrics["acc_single"] == pytest.approx(2 / 3)
    cloze = first["gaokao-mathcloze"]  # gold "2"
    outs = ModelOutput(completions=["答案是 3", "答案是 $\\frac{4}{2}$", "答案是 2.0"])
    score = next(iter(task.score([(cloze, outs)])))
    # "\frac{4}{2}" and "2.0" are the same value and pool their votes against the earlier "3".
    assert score.answer == "2" and score.metrics["vote_share"] == pytest.approx(2 / 3)
    assert score.metrics["acc"] == 1.0 and score.metrics["acc_single"] == pytest.approx(2 / 3)


@pytest.mark.model
def test_bbh_self_consistency_real_model(tmp_path):
    """n=5 sampled CoT answers per item on the real model; both accuracies reported and consistent."""
    out = subprocess.run(
        [str(ROOT / ".venv/bin/evalsuite"), "run", "--model", "smollm2-135m", "--tasks", "bbh", "--limit", "1",
         "-T", "variant=cot", "-T", "self_consistency=5", "-T", "subtasks=boolean_expressions,navigate",
         # zero-shot CoT and short answers keep the test cheap on a CPU (prefill of
         # 5 rows per item dominates with the 3-shot prompts)
         "-T", "shots=0", "-T", "max_new_tokens=48", "--data-dir", str(DATA), "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    run = next(tmp_path.iterdir())
    results = json.loads((run / "results.json").read_text())["tasks"]["bbh"]
    assert {"exact_match", "exact_match_single"} <= set(results["metrics"])
    prov = json.loads((run / "run.json").read_text())["tasks"]["bbh"]
    assert prov["generation"]["n"] == 5 and prov["generation"]["temperature"] == 0.7
    from tasks.bbh.extract import extract

    for line in (run / "samples.jsonl").read_text().splitlines():
        rec = json.loads(line)
        comps = rec["output"]["completions"]
        assert len(comps) == 5
        answers = [extract(c, rec["subtask"], "", chain_of_thought=True) for c in comps]
        counts = Counter(a for a in answers if a is not None)
        if counts:  # the voted answer is a most frequent extracted answer
            assert counts[rec["score"]["answer"]] == max(counts.values())
        singles = rec["score"]["metrics"]["exact_match_single"]
        assert singles * 5 == pytest.approx(round(singles * 5))


def test_a_tie_is_named_in_the_detail():
    # 2-2 between (A) and (B): the order decides, and the verdict says so.
    score = vote_score(["So (B)", "So (A)", "So (A)", "So (B)", "none"], lambda t: t[3:] if "(" in t else None,
                       lambda a: a == "(A)", "exact_match")
    assert score.answer == "(A)" and score.metrics["exact_match"] == 1.0
    assert score.detail.startswith("votes 2/5 (tied with (B): the first to reach 2 wins); samples:")
    clear = vote_score(["So (A)", "So (A)", "So (B)"], lambda t: t[3:], lambda a: a == "(A)", "exact_match")
    assert "tied" not in clear.detail
