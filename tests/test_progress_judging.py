"""Judging shows its own progress, in a log and on a terminal, counted in judgments.

The judge is a mock that replies per prompt substring (as in tests/test_judging.py),
so every count below is exact; the real embedded model as judge is covered in
tests/test_judge_model.py with the run it shares.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from evalsuite.progress import RunProgress
from tests.conftest import REPO, _command, _env, evalsuite
from tests.progress_lines import generation_lines, judging_lines, read_terminal

RATING = {"": "Rating: [[7]]"}
TURN_2_UNGRADED = {"Conversation with User": "I cannot decide.", "": "Rating: [[8]]"}  # turn 2 prompts quote it


def _replies(tmp_path: Path, name: str, replies: dict[str, str]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(replies))
    return str(path)


def _ok(*args: str) -> str:
    proc = evalsuite(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_a_log_shows_each_judge_batch_and_never_reprints_finished_generation(tmp_path, data_dir):
    # 24 questions: judged 16 at a time (32 judgments, then 16 more once the last 8 are answered).
    stderr = _ok("run", "--model", "mock", "--tasks", "mtbench", "--limit", "3", "--judge", "mock:j",
                 "-J", f"replies={_replies(tmp_path, 'judge', RATING)}", "--data-dir", str(data_dir),
                 "-o", str(tmp_path / "o"))
    judging = judging_lines(stderr, "mtbench")
    assert [(m["done"], m["total"], m["open"]) for m in (judging[0], judging[-1])] == [("0", "32", "+"), ("48", "48", "")]
    # While answers are still coming, the total is a lower bound: "+" exactly then.
    assert {(m["total"], m["open"]) for m in judging} == {("32", "+"), ("48", "")}
    assert any(m["done"] == "32" and m["open"] for m in judging)
    done = [int(m["done"]) for m in judging]
    assert done == sorted(done) and judging[-1]["eta"] == "done"
    assert (judging[-1]["parse_errors"], judging[-1]["failures"]) == ("0", "0") and float(judging[-1]["rate"]) > 0
    # Generation resumes between the batches, and its finished line is printed once.
    lines = stderr.splitlines()
    generation = generation_lines(stderr, "mtbench")
    finished = [i for i, line in generation if line.startswith("mtbench: 24/24 (100%)")]
    assert len(finished) == 1 and finished[0] == generation[-1][0]
    assert lines.index(judging[0].group(0)) < finished[0] < lines.index(judging[-1].group(0))
    assert "done" in generation[-1][1]
    # Answers written ahead of their judging still count for the generation rate (the mock counts no live tokens).
    assert float(re.search(r"· ([\d.]+) tok/s", generation[-1][1])[1]) > 0


def test_rejudging_a_run_shows_the_same_judging_progress(tmp_path, data_dir):
    _ok("run", "--model", "mock", "--tasks", "mtbench", "-T", "categories=writing", "--limit", "2", "--generate-only",
        "--data-dir", str(data_dir), "-o", str(tmp_path / "gen"))
    (source,) = (tmp_path / "gen").iterdir()
    stderr = _ok("judge", "--run", str(source), "--judge", "mock:j",
                 "-J", f"replies={_replies(tmp_path, 'judge', TURN_2_UNGRADED)}", "-o", str(tmp_path / "judged"))
    judging = judging_lines(stderr, "mtbench")
    assert [m["done"] for m in judging] == ["0", "1", "2", "3", "4"] and {m["total"] for m in judging} == {"4"}
    last = judging[-1]
    assert (last["eta"], last["parse_errors"], last["failures"]) == ("done", "2", "0")  # every turn 2 is ungraded
    # Outputs read back from the earlier run are not generated here: no token rate for them.
    (_, read), = [g for g in generation_lines(stderr, "mtbench") if "2/2" in g[1]]
    assert " · 0.0 tok/s · " in read


def test_pairwise_counts_both_orders_and_failed_judge_calls(tmp_path, data_dir):
    # 2 questions x 2 turns x both orders = 8 judgments; the judge's 5th call raises: the 4 not yet judged failed.
    stderr = _ok("run", "--model", "mock", "--tasks", "mtbench", "-T", "categories=writing", "-T", "grading=pairwise",
                 "--limit", "2", "--judge", "mock:j", "-J", f"replies={_replies(tmp_path, 'judge', {'': '[[A]]'})}",
                 "-J", "fail_every=5", "--data-dir", str(data_dir), "-o", str(tmp_path / "o"))
    judging = judging_lines(stderr, "mtbench")
    assert {m["total"] for m in judging} == {"8"}
    last = judging[-1]
    assert (last["done"], last["eta"], last["parse_errors"], last["failures"]) == ("8", "done", "0", "4")
    assert any(m["done"] == "4" and m["failures"] == "0" for m in judging)


def test_two_turn_judge_conversations_show_their_replies(tmp_path, data_dir):
    # n=3 identical completions per beginning: one judgment each (asked once), of two replies.
    judge = {"Now, grade": "Grammar: 8/10, Creativity: 6/10, Consistency: 7/10. Age group: C (6-7)", "": "Simple."}
    out = tmp_path / "o"
    stderr = _ok("run", "--model", "mock:m", "-M", "reply= she went to bed.", "--tasks", "tinystories", "-T", "n=3",
                 "--limit", "2", "--judge", "mock:j", "-J", f"replies={_replies(tmp_path, 'judge', judge)}",
                 "--data-dir", str(data_dir), "-o", str(out))
    (run,) = out.iterdir()
    asked = (run / "judgments.jsonl").read_text().count("\n")
    last = judging_lines(stderr, "tinystories")[-1]
    assert (last["done"], last["total"], last["replies"], last["replies_total"]) == (str(asked), "2", "4", "4")
    assert (last["eta"], last["parse_errors"], last["failures"]) == ("done", "0", "0")


def test_failed_judge_conversations_leave_no_replies_to_wait_for(tmp_path, data_dir):
    # 6 beginnings, two-reply judge conversations; the judge's 4th call raises: that batch's calls all fail.
    judge = {"Now, grade": "Grammar: 8/10, Creativity: 6/10, Consistency: 7/10. Age group: C (6-7)", "": "Simple."}
    stderr = _ok("run", "--model", "mock:m", "-M", "reply= she went to bed.", "--tasks", "tinystories", "--limit", "6",
                 "--judge", "mock:j", "-J", f"replies={_replies(tmp_path, 'judge', judge)}", "-J", "fail_every=4",
                 "--data-dir", str(data_dir), "-o", str(tmp_path / "o"))
    judging = judging_lines(stderr, "tinystories")
    assert (judging[-1]["done"], judging[-1]["total"], judging[-1]["eta"]) == ("6", "6", "done")
    assert int(judging[-1]["failures"]) > 0
    # Once its judgments are all done, a line shows no replies still to come ("4/4+ judgments · 3/8 replies").
    finished = [m.group(0) for m in judging if m["done"] == m["total"]]
    assert finished and all(" replies " not in line for line in finished), finished


def test_terminal_shows_a_judging_bar_per_task(tmp_path, data_dir):
    args = ["run", "--model", "mock", "--tasks", "mtbench", "-T", "categories=writing", "--limit", "2", "--judge",
            "mock:j", "-J", f"replies={_replies(tmp_path, 'judge', TURN_2_UNGRADED)}", "-J", "delay=0.1",
            "--data-dir", str(data_dir), "-o", str(tmp_path / "o")]
    returncode, text = read_terminal(_command(args), _env())
    assert returncode == 0, text
    assert "\x1b[" in text and not judging_lines(text.replace("\r", "\n"), "mtbench")  # a live display, no log lines
    assert re.search(r"mtbench judging\s+━+\s+4/4 judgments\s+\d+:\d\d done [\d.]+ tok/s\s+2 parse err · 0 judge fail",
                     re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text))


def test_a_narrow_terminal_keeps_each_entry_on_one_line(tmp_path, data_dir):
    args = ["run", "--model", "mock", "--tasks", "mtbench", "-T", "categories=writing", "--limit", "2", "--judge",
            "mock:j", "-J", f"replies={_replies(tmp_path, 'judge', TURN_2_UNGRADED)}", "--data-dir", str(data_dir)]
    for columns in (80, 40):
        returncode, text = read_terminal(_command([*args, "-o", str(tmp_path / str(columns))]), _env({"COLUMNS": str(columns)}))
        assert returncode == 0, text
        rows = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "\n").splitlines()
        # A wrapped row goes on in a line of its own that starts with blanks ("   errors · 0 judge").
        assert not [row for row in rows if re.match(r"\s{8,}\S", row)], rows
        if columns == 80:  # a usual terminal still shows every column
            assert any(re.fullmatch(r"mtbench judging\s.*4/4 judgments \d+:\d\d done [\d.]+ tok/s\s+2 parse err · 0 judge fail\s*",
                                    row) for row in rows), rows


def test_ctrl_c_while_judging_says_how_to_continue_and_the_resumed_run_finishes(tmp_path, data_dir):
    # 10 questions, 20 judgments, a slow judge: Ctrl-C lands once the first judgment is shown.
    args = ["run", "--model", "mock", "--tasks", "mtbench", "-T", "categories=writing", "--limit", "10",
            "--judge", "mock:j", "-J", f"replies={_replies(tmp_path, 'judge', RATING)}", "-J", "delay=0.2",
            "--data-dir", str(data_dir), "-o", str(tmp_path / "o")]
    # Ctrl-C as a terminal has it (a CI runner may start us with SIGINT ignored).
    proc = subprocess.Popen(_command(args), cwd=REPO, env=_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("mtbench judging: 1/20"):
            proc.send_signal(signal.SIGINT)
            break
    rest, stdout = proc.stderr.read(), proc.stdout.read()
    assert proc.wait(timeout=60) == 130, "".join(seen) + rest
    assert stdout == "" and "Traceback" not in rest
    (run,) = (tmp_path / "o").iterdir()
    (message,) = [line for line in rest.splitlines() if line.strip()]
    assert message == f"interrupted: all finished work is saved; continue with `evalsuite run --resume {shlex.quote(str(run))}`"
    judged = (run / "judgments.jsonl").read_text().count("\n")
    assert 1 <= judged < 20
    # The command it names continues: only the judgments not yet made are asked.
    judging = judging_lines(_ok(*shlex.split(message.split("`")[1])[1:]), "mtbench")
    assert (judging[0]["done"], judging[-1]["done"], judging[-1]["total"], judging[-1]["eta"]) == (str(judged), "20", "20", "done")
    assert (run / "judgments.jsonl").read_text().count("\n") == 20


def test_resumed_outputs_scored_again_do_not_set_the_generation_pace(tmp_path, data_dir):
    # 32 two-turn questions; the model kills the run at its 47th reply: 15 answers written ahead, none judged.
    out = tmp_path / "o"
    killed = evalsuite("run", "--model", "mock:m", "-M", "kill_after=47", "--tasks", "mtbench", "--limit", "4",
                       "--judge", "mock:j", "-J", f"replies={_replies(tmp_path, 'judge', RATING)}",
                       "--data-dir", str(data_dir), "-o", str(out))
    assert killed.returncode == -9, killed.stderr
    (run,) = out.iterdir()
    assert (run / "samples.jsonl").read_text().count('"generated"') == 15
    stderr = _ok("run", "--resume", str(run), "--data-dir", str(data_dir))
    generation = [line for _, line in generation_lines(stderr, "mtbench")]
    # The 15 read back take no generating: no pace, no ETA (it said "ETA 0:00" with 17 answers still to come).
    read_back = [line for line in generation if int(line.split(": ")[1].split("/")[0]) <= 15]
    assert read_back and all(" · ETA ? · 0.0 tok/s · " in line for line in read_back), read_back
    assert generation[-1].startswith("mtbench: 32/32 (100%)") and " · done · " in generation[-1]
    assert judging_lines(stderr, "mtbench")[-1]["done"] == "64"


def _plain(interval_s: float) -> tuple[RunProgress, io.StringIO]:
    out = io.StringIO()
    return RunProgress(Console(file=out, force_terminal=False, width=300), interval_s=interval_s), out


def test_after_the_last_sample_the_heartbeat_says_scoring_not_the_finished_line():
    progress, out = _plain(interval_s=0.05)
    with progress:
        progress.start_task("humaneval", total=1, completed=0)
        progress.advance("humaneval", tokens=5)
        deadline = time.monotonic() + 60  # waits for the heartbeat thread; asserts no duration
        while "scoring" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        progress.finish_task("humaneval")
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("humaneval: 1/1 (100%)") for line in lines) == 1
    assert any(re.fullmatch(r"humaneval: scoring … \d+:\d\d", line) for line in lines), lines


def test_a_judge_sharing_the_models_backend_leaves_the_generation_count_alone():
    """Live token counts of one backend serve both entries; each counts only what happened while it worked."""
    tokens = [0, 0]  # the shared backend's running (prompt, completion) tokens
    progress, _ = _plain(interval_s=3600)
    with progress:
        progress.start_task("mtbench", total=2, completed=0, live=lambda: (tokens[0], tokens[1]))
        tokens[:] = [100, 10]  # the first answer
        progress.advance("mtbench")
        judging = progress.start_phase("mtbench", "judging", "judgments", ("parse error", "judge failure"),
                                       step_unit="replies", live=lambda: (tokens[0], tokens[1]))
        progress.add_work(judging, 1)
        progress.add_steps(judging, 1)
        tokens[:] = [1100, 510]  # the judge reads and writes, on the same backend
        progress.step(judging)
        progress.advance(judging, error="parse error")  # the batch is judged: generation goes on
        tokens[:] = [1200, 520]  # the second answer
        progress.advance("mtbench")
        tokens[:] = [1300, 530]  # scoring the last batch
        progress.finish_task("mtbench")
    generation, judged = progress.counts["mtbench"], progress.counts[judging]
    assert generation.live_tokens() == (200, 20) and judged.live_tokens() == (1000, 500)
    assert judged.errors["parse error"] == 1 and judged.done == judged.total == 1 and not judged.open


def test_after_ctrl_c_the_last_terminal_frame_says_interrupted_not_an_eta():
    # Ctrl-C mid-judging: the judge settles its announced replies on the way out, which read as "ETA 0:00"
    # in the frame left on the terminal.
    out = io.StringIO()
    progress = RunProgress(Console(file=out, force_terminal=True, width=200))
    with pytest.raises(KeyboardInterrupt), progress:
        progress.start_task("mtbench", total=2, completed=0)
        for _ in range(2):
            progress.advance("mtbench", tokens=10)
        progress.finish_task("mtbench")
        judging = progress.start_phase("mtbench", "judging", "judgments", ("parse error", "judge failure"))
        progress.add_work(judging, 4)
        progress.add_steps(judging, 4)
        progress.step(judging, tokens=7)
        progress.advance(judging, tokens=0)
        progress.add_steps(judging, -3)  # the pending replies, settled as the interrupt unwinds
        raise KeyboardInterrupt
    last = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).replace("\r", "\n").splitlines()
    judging_rows = [row for row in last if row.startswith("mtbench judging")]
    assert re.match(r"mtbench judging\s+━{10}╺━+\s+1/4 judgments", judging_rows[-1]), judging_rows[-1]  # a quarter full
    assert "interrupted" in judging_rows[-1] and "ETA" not in judging_rows[-1], judging_rows[-1]
    assert re.search(r"mtbench\s+━+\s+2/2\s+\d+:\d\d done", "\n".join(last)), last  # finished work stays "done"
