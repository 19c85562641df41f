"""Judges measured against people: MT-Bench's 3,355 expert votes, preference files, TinyStories human scores."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from evalsuite.records import ModelOutput, SampleResult
from evalsuite.rundir import RunDir
from evalsuite.task import TaskContext
from tasks.mtbench.agreement import mtbench_human_agreement
from tasks.tinystories.agreement import tinystories_human_agreement
from tests.conftest import evalsuite


def _output(*replies: str) -> ModelOutput:
    return ModelOutput(completions=list(replies), parts=[ModelOutput(completions=[r]) for r in replies])


def _score(task, replies_for) -> list[SampleResult]:
    """Score every sample of ``task`` from judge replies, as the runner would."""
    items = [(s, _output(*replies_for(s))) for s in task.samples]
    return [SampleResult(task=task.name, sample_id=s.id, subtask=s.subtask, target=s.target, score=sc)
            for (s, _), sc in zip(items, task.score(items))]


# The judge's positional labels that produce a verdict in both orders (a listed first, then b first).
BOTH_ORDERS = {"a": ("[[A]]", "[[B]]"), "b": ("[[B]]", "[[A]]"), "tie": ("[[C]]", "[[C]]"),
               "tie (inconsistent)": ("[[A]]", "[[A]]")}


def test_gpt4_recorded_verdicts_reproduce_the_published_agreement(data_dir):
    """GPT-4's own verdicts, fed through parsing, order combination and agreement
    counting, give the MT-Bench paper's 66 % / 85 % (66.2 % / 85.6 % on these files)."""
    task = mtbench_human_agreement(TaskContext(data_dir=data_dir, chat=True))
    gpt4 = {}
    for line in (data_dir / "mtbench" / "human_judgments" / "gpt4_pair.jsonl").read_text().splitlines():
        row = json.loads(line)
        a, b, winner = row["model_a"], row["model_b"], row["winner"]
        if a > b:  # the task's canonical (alphabetical) order
            a, b = b, a
            winner = {"model_a": "model_b", "model_b": "model_a"}.get(winner, winner)
        gpt4[f"{row['question_id']}/turn{row['turn']}/{a}|{b}"] = {"model_a": "a", "model_b": "b"}.get(winner, winner)
    results = _score(task, lambda s: BOTH_ORDERS[gpt4[s.id]])
    assert len(results) == 1814
    result = task.aggregate(results)
    assert sum(r.score.metrics["votes"] for r in results) == 3355
    assert round(result.metrics["agreement"].value, 3) == 0.662
    assert round(result.metrics["agreement_no_ties"].value, 3) == 0.856
    assert sum(r.score.metrics["votes_no_ties"] for r in results) == 2129
    assert result.metrics["gpt4_agreement"].value == 1.0
    assert result.judging.position_consistency == pytest.approx(1 - 380 / 2400, abs=0.02)
    assert result.judging.parse_errors == 0


def test_limit_takes_a_stratified_subset(data_dir):
    from evalsuite.runner import limit_samples

    task = mtbench_human_agreement(TaskContext(data_dir=data_dir, chat=True))
    subset = limit_samples(task.samples, 3)
    assert Counter(s.subtask for s in subset) == {c: 3 for c in
                                                  ("coding", "extraction", "humanities", "math", "reasoning", "roleplay", "stem", "writing")}
    assert len({s.input["models"][0] for s in subset}) > 1  # not the first model pair of each category


def test_a_preference_file_is_measured_with_one_command(tmp_path, data_dir):
    rows = [
        {"prompt": "Capital of France?", "response_a": "Paris.", "response_b": "Lyon.", "label": "a"},
        {"prompt": "Capital of France?", "response_a": "Paris.", "response_b": "Lyon.", "label": "tie"},
        {"prompt": "2+2?", "response_a": "5", "response_b": "4", "label": "model_b", "category": "math",
         "reference": "4"},
        {"prompt": "Name a color.", "response_a": "Blue.", "response_b": "Red.", "label": "b",
         "turn_2": {"prompt": "Another one?", "response_a": "Green.", "response_b": "Teal, a blue-green."}},
    ]
    data = tmp_path / "prefs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    # A judge that prefers Paris and 4 in either position, and always says A on the colour question.
    judge = {"Assistant A's Answer]\nParis": "[[A]]", "Assistant B's Answer]\nParis": "[[B]]",
             "Assistant A's Answer]\n4": "[[A]]", "Assistant B's Answer]\n4": "[[B]]", "": "[[A]]"}
    replies = tmp_path / "judge.json"
    replies.write_text(json.dumps(judge))
    out = tmp_path / "out"
    proc = evalsuite("run", "--model", "mock:judge", "-M", f"replies={replies}", "--tasks", "mtbench_human_agreement",
                     "-T", f"data={data}", "--data-dir", str(data_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    (run,) = out.iterdir()
    records = {r.sample_id: r for r in RunDir(run).samples()}
    assert len(records) == 3  # the two France rows are one item with two votes
    prompts = [p for r in records.values() for p in r.prompts]
    assert any("Reference Answer" in m.content for p in prompts for m in p)  # reference-guided when given
    assert any("### User:\nAnother one?" in m.content for p in prompts for m in p)  # the turn-2 conversation
    result = RunDir(run).results().tasks["mtbench_human_agreement"]
    # France: verdict a (1 of 2 votes agree); math: b (agrees); colour: inconsistent -> tie (vote b disagrees).
    assert result.metrics["agreement"].value == pytest.approx(2 / 4)
    assert result.metrics["agreement_no_ties"].value == pytest.approx(2 / 2)
    assert result.judging.position_consistency == pytest.approx(2 / 3)
    assert "gpt4_agreement" not in result.metrics


def test_bad_preference_rows_are_one_error_line(tmp_path, data_dir):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"prompt": "q", "response_a": "x", "response_b": "y", "label": "left"}) + "\n")
    proc = evalsuite("run", "--model", "mock", "--tasks", "mtbench_human_agreement", "-T", f"data={data}",
                     "--data-dir", str(data_dir))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{data}:1: label must be a, b or tie" in proc.stderr


def test_tinystories_agreement_per_criterion_and_model_order(data_dir):
    task = tinystories_human_agreement(TaskContext(data_dir=data_dir, chat=True))
    assert len(task.samples) == 450
    assert task.notes == {} and task.samples[0].target

    # A judge that gives every criterion exactly the human's score, except "0" for the 1M model.
    def replies(sample):
        lines = [f"Criterion {k}: {0 if sample.input['model'].endswith('-1M') else v:g}" for k, v in sample.target.items()]
        return ["Short reasons.\n" + "\n".join(lines)]

    result = task.aggregate(_score(task, replies))
    assert result.judging.parse_errors == 0
    assert set(result.notes["human_order"]) == {"roneneldan/TinyStories-1M", "roneneldan/TinyStories-8M",
                                                "roneneldan/TinyStories-28M"}
    assert result.notes["human_order"][-1] == "roneneldan/TinyStories-1M"
    assert result.notes["order_matches"] is True and result.metrics["size_order_kendall_tau"].value == 1.0
    # Only the 1M model's non-zero human scores disagree.
    grammar = [s for s in task.samples if s.subtask == "Grammar"]
    expected = sum(not (s.input["model"].endswith("-1M") and s.target["A"] != 0) for s in grammar) / len(grammar)
    assert result.metrics["agreement_Grammar_A"].value == pytest.approx(expected) and expected < 1
    assert result.notes["scored_criteria_without_text"] == {"Creativity_D": 75}


ROW = {"prompt": "q", "response_a": "x", "response_b": "y", "label": "a"}


@pytest.mark.parametrize(
    "lines, message",
    [
        ([json.dumps(ROW), "{bad"], ":2: malformed JSON"),
        ([json.dumps({k: v for k, v in ROW.items() if k != "label"})], ":1: malformed row (missing label)"),
        ([json.dumps({**ROW, "label": "model_c"})], ":1: label must be a, b or tie"),
        ([], ": no rows"),
        # optional fields of another type were str()-ed ("['x']") or dropped without a word
        ([json.dumps({**ROW, "category": ["writing"]})], ":1: field(s) category must be strings"),
        ([json.dumps({**ROW, "id": {"n": 1}})], ":1: field(s) id must be strings"),
        ([json.dumps({**ROW, "reference": 5})], ":1: field(s) reference must be strings"),
        ([json.dumps({**ROW, "turn_2": {"prompt": "q2", "response_a": "x2", "response_b": "y2", "reference": 5}})],
         ":1: turn_2 must be an object"),
        # a turn-2 reference alone was dropped without a word (the reference-guided prompt shows both turns')
        ([json.dumps({**ROW, "turn_2": {"prompt": "q2", "response_a": "x2", "response_b": "y2", "reference": "r2"}})],
         ":1: turn_2.reference needs a reference for turn 1 too"),
        # two votes on one item that disagree on its reference: the later one silently won
        ([json.dumps({**ROW, "reference": "r1"}), json.dumps({**ROW, "label": "b", "reference": "r2"})],
         ":2: reference differs from the one {data}:1 gave the same item"),
        ([json.dumps({**ROW, "category": "math"}), json.dumps({**ROW, "category": "coding"})],
         ":2: category differs from the one {data}:1 gave the same item"),
        # an unpaired surrogate escape decodes to text no UTF-8 file can hold (was a UnicodeEncodeError traceback)
        ([json.dumps(ROW), '{"prompt": "q \\ud800", "response_a": "x", "response_b": "y", "label": "a"}'],
         ":2: malformed JSON (a \\u escape of an unpaired UTF-16 surrogate is not text)"),
        # the error names the line that reuses the id, and the line that first gave it
        ([json.dumps({**ROW, "id": "7"}), json.dumps({**ROW, "prompt": "other", "id": "7"})],
         ":2: id '7' already names a different item ({data}:1)"),
    ],
)
def test_malformed_preference_files_name_the_line(tmp_path, data_dir, lines, message):
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(line + "\n" for line in lines))
    proc = evalsuite("run", "--model", "mock", "--tasks", "mtbench_human_agreement", "-T", f"data={data}",
                     "--data-dir", str(data_dir), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: {data}{message.format(data=data)}"), line


def test_preference_rows_with_ids_and_votes_group_by_content(tmp_path, data_dir):
    """Integer ids are ids; one item's votes on several lines are one item; a U+2028 inside a
    response is text, a CRLF line end is a line end."""
    data = tmp_path / "prefs.jsonl"
    rows = [{**ROW, "id": 7, "response_a": "x\u2028y"}, {**ROW, "id": 7, "label": "tie", "response_a": "x\u2028y"},
            {**ROW, "prompt": "q2", "label": "b"}]
    data.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows).encode())
    task = mtbench_human_agreement(TaskContext(data_dir=data_dir, chat=True), data=str(data))
    votes = {s.id: s.target["votes"] for s in task.samples}
    assert votes.pop("7") == ["a", "tie"] and list(votes.values()) == [["b"]]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"model_a": "gpt-4", "model_b": "claude-v2", "question_id": 81, "turn": 1, "winner": "model_a"},
         "unknown model 'claude-v2'"),
        ({"model_a": "gpt-4", "model_b": "claude-v1", "question_id": 999, "turn": 1, "winner": "model_a"},
         "no MT-Bench question 999 with turn 1"),
        ({"model_a": "gpt-4", "model_b": "claude-v1", "question_id": 81, "turn": 3, "winner": "tie"},
         "no MT-Bench question 81 with turn 3"),
        ({"model_a": "gpt-4", "model_b": "claude-v1", "question_id": "81", "turn": 1, "winner": "tie"},
         "no MT-Bench question '81' with turn 1"),
        ({"model_a": "gpt-4", "model_b": "claude-v1", "question_id": 81, "turn": 1, "winner": "draw"},
         "label must be a, b or tie"),
    ],
)
def test_a_mirror_whose_votes_do_not_join_is_one_error_line(tmp_path, data_dir, row, message):
    """A --data-dir mirror with a vote on an unknown model, question or turn: an error naming the row, no KeyError."""
    import shutil

    shutil.copytree(data_dir / "mtbench", tmp_path / "mtbench")
    with (tmp_path / "mtbench" / "human_judgments" / "human.jsonl").open("a") as fh:
        fh.write(json.dumps({"judge": "expert_0", **row}) + "\n")
    proc = evalsuite("run", "--model", "mock", "--tasks", "mtbench_human_agreement", "--limit", "1",
                     "--data-dir", str(tmp_path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "human_judgments: row" in line and message in line, line


def test_a_mirror_missing_a_models_answer_is_one_error_line(tmp_path, data_dir):
    import shutil

    shutil.copytree(data_dir / "mtbench", tmp_path / "mtbench")
    answers = tmp_path / "mtbench" / "model_answer" / "llama-13b.jsonl"
    answers.write_text("".join(line + "\n" for line in answers.read_text().splitlines()
                               if json.loads(line)["question_id"] != 81))
    proc = evalsuite("run", "--model", "mock", "--tasks", "mtbench_human_agreement", "--limit", "1",
                     "--data-dir", str(tmp_path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "model_answer/llama-13b.jsonl has no turn 1 answer to question 81" in proc.stderr
