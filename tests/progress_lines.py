"""Progress as a user sees it: plain lines in a log, the live display on a terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess

# One plain judging line, e.g.
# "tinystories judging: 3/20+ judgments (15%) · 23/40 replies · elapsed 1:02 · ETA 0:46 · 41.0 tok/s · 1 parse error · 0 judge failures"
JUDGING = re.compile(
    r"^(?P<task>\w+) judging: (?P<done>\d+)/(?P<total>\d+)(?P<open>\+?) judgments \((?P<pct>\d+)%\)"
    r"(?: · (?P<replies>\d+)/(?P<replies_total>\d+) replies)? · elapsed \d+:\d\d · (?P<eta>ETA (?:\d+:\d\d|\?)|done)"
    r" · (?P<rate>[\d.]+) tok/s(?: · prefill \d+ tok/s)? · (?P<parse_errors>\d+) parse errors?"
    r" · (?P<failures>\d+) judge failures?$"
)


def judging_lines(stderr: str, task: str) -> list[re.Match[str]]:
    """The plain judging lines of ``task``, in order."""
    return [m for m in map(JUDGING.match, stderr.splitlines()) if m and m["task"] == task]


def generation_lines(stderr: str, task: str) -> list[tuple[int, str]]:
    """(line number, line) of ``task``'s plain generation lines (``mtbench: 2/2 (100%) · ...``)."""
    return [(i, line) for i, line in enumerate(stderr.splitlines()) if re.match(rf"{task}: \d+/\d+ \(", line)]


def read_terminal(command: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run ``command`` with stderr on a pseudo-terminal (a user's terminal); its exit code and all it drew there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                            env={"COLUMNS": "200", **env, "TERM": "xterm-256color"})
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.communicate(timeout=timeout)
    os.close(master)
    return proc.returncode, out.decode("utf-8", "replace")
