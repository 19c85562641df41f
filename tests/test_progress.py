"""Progress is visible in both modes: plain lines through a pipe, a live bar on a terminal.

Both tests run the real CLI in a subprocess (the mock backend with a per-request
delay stands in for a slow model) and read its stderr while it runs.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.conftest import _command, _env
from tests.progress_lines import read_terminal

PLAIN = re.compile(
    r"^bbh: (\d+)/(\d+) \((\d+)%\) · elapsed \d+:\d\d · (ETA (\d+:\d\d|\?)|done) · ([\d.]+) tok/s"
    r"(?: · prefill (\d+) tok/s)? · (\d+) errors?$"
)


def _run_args(data_dir, tmp_path, *extra: str) -> list[str]:
    return ["run", "--model", "mock", "--tasks", "bbh", "--limit", "1", "--data-dir", str(data_dir),
            "-o", str(tmp_path), *extra]


def test_piped_stderr_gets_plain_progress_lines_while_the_run_goes(data_dir, tmp_path):
    # 27 samples at 0.25 s each, every 9th request failing; a heartbeat every 1 s.
    args = _run_args(data_dir, tmp_path, "-M", "delay=0.25", "-M", "fail_every=9")
    proc = subprocess.Popen(_command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env({"EVALSUITE_PROGRESS_INTERVAL": "1"}))
    seen: list[tuple[float, str]] = []
    for line in proc.stderr:  # read as it is written
        seen.append((time.monotonic(), line.rstrip("\n")))
    finished = time.monotonic()
    proc.wait(timeout=60)
    assert proc.returncode == 0, "\n".join(line for _, line in seen)
    lines = [line for _, line in seen]
    # The mock loads at once: its status shows only the outcome (see test_plain_status_*).
    assert re.fullmatch(r"loading model mock: done in [\d.]+ s", lines[0])
    progress = [(t, PLAIN.match(line)) for t, line in seen if PLAIN.match(line)]
    assert len(progress) >= 8, lines
    # Lines arrive during the run, not all at the end: the first is seconds before exit.
    assert finished - progress[0][0] > 3
    counts = [int(m.group(1)) for _, m in progress]
    assert counts == sorted(counts) and counts[-1] == 27 and {int(m.group(2)) for _, m in progress} == {27}
    assert progress[-1][1].group(4) == "done"
    # Failed generations are counted as they happen.
    assert int(progress[-1][1].group(8)) >= 1
    assert any(int(m.group(8)) == 0 for _, m in progress)
    # No terminal control codes in a log; the mock counts no tokens as it goes, so no prefill rate.
    assert not any("\x1b[" in line for line in lines)
    assert all(m.group(7) is None for _, m in progress)


@pytest.mark.model
def test_a_local_model_shows_tokens_per_second_before_any_sample_finishes(data_dir, tmp_path):
    """The HF backend counts prompt and completion tokens as it goes, so the rates move during a long prefill
    and decode, not only when samples finish."""
    args = ["run", "--model", "smollm2-135m", "--tasks", "bbh", "--limit", "1", "-T", "subtasks=navigate,snarks,word_sorting",
            "--data-dir", str(data_dir), "-o", str(tmp_path)]
    proc = subprocess.run(_command(args), capture_output=True, text=True, timeout=300,
                          env=_env({"EVALSUITE_PROGRESS_INTERVAL": "1"}))
    assert proc.returncode == 0, proc.stderr
    progress = [m for m in map(PLAIN.match, proc.stderr.splitlines()) if m]
    before_any = [m for m in progress if m.group(1) == "0" and m.group(7) is not None]
    assert any(int(m.group(7)) > 0 for m in before_any), proc.stderr  # prompt tokens prefilled
    assert any(float(m.group(6)) > 0 for m in before_any), proc.stderr  # tokens decoded, none returned yet
    assert progress[-1].group(4) == "done" and float(progress[-1].group(6)) > 0


def test_terminal_gets_a_live_bar_and_a_loading_line(data_dir, tmp_path):
    returncode, text = read_terminal(_command(_run_args(data_dir, tmp_path, "-M", "delay=0.1")), _env({"COLUMNS": "160"}))
    assert returncode == 0
    assert "\x1b[" in text  # a live display, redrawn in place
    assert re.search(r"✓ loading model mock \([\d.]+ s\)", text)
    assert "━" in text and "27/27" in text and "ETA" in text and "tok/s" in text and "0 err" in text
    assert not PLAIN.search(text.replace("\r", "\n"))  # no plain lines on a terminal


def test_plain_status_shows_a_slow_step_while_it_lasts_and_a_quick_error_not_at_all():
    import io

    from rich.console import Console

    from evalsuite.errors import UserError
    from evalsuite.progress import status

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with status("starting server", console, interval_s=0.5):
        time.sleep(1.8)
    lines = out.getvalue().splitlines()
    assert lines[0] == "starting server …" and re.fullmatch(r"starting server … 0:0\d", lines[1])
    assert re.fullmatch(r"starting server: done in [\d.]+ s", lines[-1])

    out.seek(0), out.truncate()
    try:
        with status("loading model openai:nope", console):
            raise UserError("model 'nope' is not served")
    except UserError:
        pass
    assert out.getvalue() == ""  # the error line the CLI prints stays the only one


def test_a_model_name_is_shown_as_typed_not_as_rich_markup_or_emoji(data_dir, tmp_path):
    # "[/]" is a rich closing tag (a MarkupError), ":ok:" an emoji code (🆗): both are a valid model name here.
    args = ["run", "--model", "mock:ok:x[/]", "--tasks", "bbh", "-T", "subtasks=navigate", "--limit", "1",
            "--data-dir", str(data_dir)]
    proc = subprocess.run(_command((*args, "-o", str(tmp_path / "log"))), capture_output=True, text=True, env=_env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"loading model mock:ok:x\[/\]: done in [\d.]+ s", proc.stderr.splitlines()[0]), proc.stderr
    assert proc.stdout.split("\n", 1)[0].strip().startswith("ok:x[/] — ")  # the results table's title
    returncode, text = read_terminal(_command((*args, "-o", str(tmp_path / "tty"))), _env({"COLUMNS": "160"}))
    assert returncode == 0 and "Traceback" not in text
    assert re.search(r"✓ loading model mock:ok:x\[/\] \([\d.]+ s\)", text), text
