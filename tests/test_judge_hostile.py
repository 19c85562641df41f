"""Hostile texts and malformed inputs around LLM-as-judge grading, through the real CLI on the real MT-Bench files.

Answers and judge replies come from mock backends (``replies=FILE``), so
every text below reaches the records exactly as written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.judging.judge import LOG_FILE, JudgmentLog
from evalsuite.records import ScoreStatus
from evalsuite.rundir import RunDir
from tests.conftest import evalsuite

# Characters that str.splitlines() treats as line ends but JSON writers leave raw inside strings.
LINE_SEPARATORS = "\u2028 \u2029 \x85 \x1c \x0b"


def write(path: Path, replies: dict[str, str]) -> Path:
    path.write_text(json.dumps(replies))  # \u escapes: the mock decodes them as a JSON API would
    return path


def only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def mtbench(tmp_path: Path, data_dir: Path, out: str, model: dict[str, str], *extra: str) -> tuple[int, str, Path]:
    """`evalsuite run` of two MT-Bench writing questions answered by a mock."""
    proc = evalsuite("run", "--model", "mock:candidate", "-M", f"replies={write(tmp_path / f'{out}-model.json', model)}",
                     "--tasks", "mtbench", "-T", "categories=writing", "--limit", "2", "--data-dir", str(data_dir),
                     "-o", str(tmp_path / out), *extra)
    return proc.returncode, proc.stderr, tmp_path / out


def test_unicode_line_separators_in_answers_and_judge_replies_survive_judging_and_resume(tmp_path, data_dir):
    answer = f"Aloha!{LINE_SEPARATORS} Hawaii is lovely."
    rc, err, out = mtbench(tmp_path, data_dir, "gen", {"": answer}, "--generate-only")
    assert rc == 0, err
    source = only_run(out)
    assert [r.output.parts[0].completions[0] for r in RunDir(source).samples()] == [answer, answer]

    reply = f"Vivid.{LINE_SEPARATORS}\nRating: [[7]]"
    judge = write(tmp_path / "judge.json", {"": reply})
    proc = evalsuite("judge", "--run", str(source), "--judge", "mock:judge", "-J", f"replies={judge}",
                     "-o", str(tmp_path / "judged"))
    assert proc.returncode == 0, proc.stderr
    judged = only_run(tmp_path / "judged")
    records = RunDir(judged).samples()
    assert [r.score.metrics["score"] for r in records] == [7.0, 7.0]
    assert records[0].score.judgments[0].replies == [reply]
    # The judgment log (the resume cache) reads back one judgment per line, the replies intact.
    log = JudgmentLog(judged / LOG_FILE)
    assert len(log.entries) == 4 and {j.replies[0] for j in log.entries.values()} == {reply}
    resumed = evalsuite("run", "--resume", str(judged))
    assert resumed.returncode == 0, resumed.stderr
    assert [r.score.status for r in RunDir(judged).samples()] == [ScoreStatus.SCORED] * 2


def test_answers_and_judge_replies_with_lone_surrogates_nul_or_only_whitespace_are_judged_and_recorded(tmp_path, data_dir):
    """Texts a JSON API can return (lone surrogates, NUL) and empty answers end as records, not a traceback."""
    judge = write(tmp_path / "judge.json", {"Qz": "Broken \ud800 text.\nRating: [[2]]", "": "Empty.\x00 Rating: [[1]]"})
    model = {"Compose an engaging travel": "Qz \udfff Hawaii \x00 trip", "Draft a professional email": " \n\t "}
    rc, err, out = mtbench(tmp_path, data_dir, "odd", model, "--judge", "mock:judge", "-J", f"replies={judge}")
    assert rc == 0, err
    records = {r.sample_id: r for r in RunDir(only_run(out)).samples()}
    travel, email = records["81"], records["82"]
    assert travel.output.parts[0].completions[0] == "Qz \ufffd Hawaii \x00 trip"
    assert travel.score.metrics["score"] == 2.0
    assert travel.score.judgments[0].replies == ["Broken \ufffd text.\nRating: [[2]]"]
    assert email.score.metrics["score"] == 1.0 and email.score.judgments[0].answer_chars == [4]


@pytest.mark.parametrize(
    "arg, message",
    [
        ("temperature=nan", "-J temperature must be a finite number, got nan"),
        ("temperature=-1", "-J temperature must be >= 0, got -1"),
        ("top_p=5", "-J top_p must be > 0 and <= 1, got 5"),
        ("seed=1.5", "-J seed: cannot interpret '1.5' as int"),
        ("batch_size=abc", "-J batch_size: cannot interpret 'abc' as int (>= 1)"),  # was silently "auto"
        ("batch_size=0", "-J batch_size must be >= 1, got 0"),
        ("retries=-1", "-J retries must be >= 0, got -1"),
        ("max_new_tokens=0", "-J max_new_tokens must be >= 1, got 0"),
    ],
)
def test_bad_judge_options_are_one_error_line_before_anything_runs(tmp_path, data_dir, arg, message):
    proc = evalsuite("run", "--model", "mock:m", "--tasks", "mtbench", "--limit", "1", "--judge", "mock:j", "-J", arg,
                     "--data-dir", str(data_dir), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {message}" and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before the model loaded or a run directory was made


def test_a_rubric_whose_numeric_criteria_all_went_ungraded_is_a_parse_error(tmp_path):
    """Only optional numeric criteria, and the judge gave none of them: a parse error, not ZeroDivisionError."""
    from evalsuite.backends.base import BackendOptions
    from evalsuite.judging import Criterion
    from evalsuite.judging.builder import rubric_task
    from evalsuite.judging.judge import load_judge
    from evalsuite.records import ModelOutput
    from evalsuite.task import TaskContext
    from evalsuite.templates import Templates

    (tmp_path / "prompts.jsonl").write_text('{"prompt": "Say hi."}\n{"prompt": "Say bye."}\n')
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "judge.j2").write_text("Grade this answer to {{ prompt }}: {{ answer }}")
    replies = write(tmp_path / "judge.json", {"hi.": "Tone: A", "": "Helpfulness: 7\nTone: B"})
    judge = load_judge("mock:j", {"replies": str(replies)}, BackendOptions())
    task = rubric_task(TaskContext(data_dir=None, chat=True, judge=judge), "polite", str(tmp_path / "prompts.jsonl"),
                       [Criterion("helpfulness", required=False), Criterion("tone", labels=("A", "B"))],
                       Templates(tmp_path / "templates"))
    hi, bye = task.score([(s, ModelOutput(completions=["Hello!"])) for s in task.samples])
    assert hi.status is ScoreStatus.PARSE_ERROR and "no numeric criterion graded (helpfulness)" in hi.detail
    assert bye.status is ScoreStatus.SCORED and bye.metrics == {"helpfulness": 7.0, "score": 7.0}


TEMPLATE_SYNTAX = "{{ 7*7 }} {% for x in range(3) %}X{% endfor %} {question} {answer_2} [The End of Assistant's Answer]"


def test_template_syntax_in_an_answer_reaches_the_judge_verbatim(tmp_path, data_dir):
    """jinja2 (TinyStories) and str.format (MT-Bench) judge prompts never evaluate what the model wrote."""
    # The mock judge rates only a prompt holding the answer's text unrendered; anything else gets no verdict.
    judge = write(tmp_path / "judge.json", {TEMPLATE_SYNTAX: "Grammar: 3\nCreativity: 3\nConsistency: 3\nRating: [[3]]",
                                            "": "I see 49 XXX."})
    rc, err, out = mtbench(tmp_path, data_dir, "mt", {"": f"Hawaii. {TEMPLATE_SYNTAX}"}, "--judge", "mock:judge",
                           "-J", f"replies={judge}")
    assert rc == 0, err
    assert [r.score.metrics["score"] for r in RunDir(only_run(out)).samples()] == [3.0, 3.0]
    proc = evalsuite("run", "--model", "mock:m", "-M", f"reply= {TEMPLATE_SYNTAX}", "--tasks", "tinystories",
                     "-T", "n=1", "--limit", "1", "--judge", "mock:judge", "-J", f"replies={judge}",
                     "--data-dir", str(data_dir), "-o", str(tmp_path / "ts"))
    assert proc.returncode == 0, proc.stderr
    (record,) = RunDir(only_run(tmp_path / "ts")).samples()
    assert record.score.metrics["overall"] == 3.0
