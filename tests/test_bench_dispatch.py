"""bench/bench_dispatch.py: a bad argument is one error line, before any endpoint starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoints", "0"], "argument --endpoints: expected positive whole numbers separated by commas, got '0'"),
        (["--endpoints", "1,x"], "argument --endpoints: expected positive whole numbers separated by commas, got '1,x'"),
        (["--per-endpoint", "0"], "argument --per-endpoint: expected a positive number, got '0'"),
        (["--latency", "-1"], "argument --latency: expected a positive number, got '-1'"),
        (["--latency", "nan"], "argument --latency: expected a positive number, got 'nan'"),
        (["--seconds", "0"], "argument --seconds: expected a positive number, got '0'"),
        (["--server-processes", "0"], "argument --server-processes: expected a positive number, got '0'"),
    ],
)
def test_bad_arguments_are_one_error_line(args, message):
    # They were tracebacks (a UserError from the driver, a ValueError), or with a
    # negative latency a report of "-129042276.00 of a core".
    proc = subprocess.run([sys.executable, "bench/bench_dispatch.py", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"bench_dispatch.py: error: {message}"
