"""Run a server so that it cannot outlive the process that started it.

``python -m evalsuite.backends.watchdog LOG -- COMMAND...`` starts COMMAND in
a new session (its own process group, with every worker it forks), writes
its pid to stdout, and then waits.  When its stdin reaches end of file --
the parent closed the pipe, exited, or was killed with SIGKILL, which no
handler in the parent can catch -- or on SIGTERM/SIGHUP, it terminates the
whole session: SIGTERM, a grace period, then SIGKILL for what is left.  If
the server exits by itself, the watchdog exits with its status.

Only the standard library: it runs in evalsuite's interpreter, next to a
server that may live in another virtualenv.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_S = 10.0


def session_members(sid: int) -> list[int]:
    """Pids of live processes in session ``sid`` (field 6 of /proc/PID/stat)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state ppid pgrp session ...; zombies are already dead.
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def terminate_session(sid: int, grace: float = GRACE_S) -> None:
    """SIGTERM every process of the session, SIGKILL what is left after ``grace`` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        members = session_members(sid)
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and session_members(sid):
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m evalsuite.backends.watchdog LOG -- COMMAND...", file=sys.stderr)
        return 2
    log_path, command = argv[0], argv[2:]
    # Ctrl-C reaches the whole foreground group; the parent decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    with open(log_path, "ab") as log:
        server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # the server's own default
    print(server.pid, flush=True)
    try:
        while not stop:
            if server.poll() is not None:
                terminate_session(server.pid, grace=1.0)  # workers it left behind
                return server.returncode
            try:
                ready, _, _ = select.select([sys.stdin], [], [], 0.5)
            except InterruptedError:
                continue
            if ready and not os.read(sys.stdin.fileno(), 4096):
                break  # EOF: the parent is gone or asked us to stop
    finally:
        terminate_session(server.pid)
        server.poll()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
