"""A local Ray instance that cannot outlive the evalsuite process that wanted it.

``ray.init()`` in the driver starts the head processes as the driver's
children; after a ``kill -9`` of the driver most of them exit, but some
(the dashboard and runtime-env agents) are orphaned and live on.  So the
local head runs inside a small guardian process instead:

- the guardian makes itself a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``),
  so every Ray process it starts, however deep and however orphaned, stays its
  descendant;
- it starts the head with ``ray.init(address="local")``, prints the cluster
  address on stdout, then blocks reading its stdin;
- the driver holds the other end of that pipe.  When the driver closes it, or
  dies in any way (the kernel closes the pipe even after SIGKILL), the
  guardian shuts Ray down and kills and reaps whatever is left.

Run as ``python -m evalsuite.backends.ray_head '{"num_cpus": 2, ...}'``; the
driver side is :class:`LocalRayHead`.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from evalsuite.errors import UserError

PR_SET_CHILD_SUBREAPER = 36
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
# For the guardian, every Ray process and the driver (read when ``ray`` is
# imported): no usage-stats call home, and single-node mode, in which every
# Ray server binds and is reached at 127.0.0.1 only.
LOCAL_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class LocalRayHead:
    """Start a private local Ray instance; ``address`` is what ``ray.init`` joins.

    ``close()`` (or the driver's death) stops every process of it.  Raises
    ``UserError`` with the tail of the head's log when it does not start.
    """

    def __init__(self, num_cpus: int, num_gpus: int | None = None, object_store_mb: int = 256) -> None:
        # A private token: nobody else on this machine can join the instance
        # (and nothing is written to ~/.ray).  The driver sets ``env`` before
        # it imports ray, then joins.
        self.env = {**LOCAL_RAY_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.log = Path(tempfile.mkstemp(prefix="evalsuite-ray-head-", suffix=".log")[1])
        config = {"num_cpus": num_cpus, "num_gpus": num_gpus, "object_store_mb": object_store_mb, "log": str(self.log)}
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", __name__, json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                env={**os.environ, **self.env},
                # Its own session: a Ctrl-C in the terminal reaches the driver,
                # which then closes the head in order.
                start_new_session=True,
            )
        reply = self._read_reply()
        if "address" not in reply:
            self.close()
            raise UserError(f"the local Ray instance did not start: {reply.get('error', 'no reply')}; log tail: {self.log_tail()}")
        self.address: str = reply["address"]

    def _read_reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else b""
        try:
            return json.loads(line) if line else {"error": f"no address within {START_TIMEOUT_S:.0f} s"}
        except json.JSONDecodeError:
            return {"error": f"unexpected reply {line[:200]!r}"}

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        """Stop the instance and wait until the guardian has reaped every process."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.unlink(missing_ok=True)


# -- the guardian process ------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    except OSError:
        return []


def _reap_all(grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, every descendant; as subreaper we inherit orphans."""
    me = os.getpid()
    deadline = time.monotonic() + grace_s
    sig = signal.SIGTERM
    while True:
        while True:  # collect the dead so they do not linger as zombies
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
        kids = _children(me)
        if not kids:
            return
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        for pid in kids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def _guard(config: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # Ray's session files (logs, sockets) go with the instance, not into /tmp/ray.
    temp_dir = tempfile.mkdtemp(prefix="evalsuite-ray-")
    try:
        import logging

        import ray

        context = ray.init(
            address="local",
            num_cpus=config["num_cpus"],
            num_gpus=config["num_gpus"],
            object_store_memory=config["object_store_mb"] << 20,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            _temp_dir=temp_dir,
        )
        print(json.dumps({"address": context.address_info["gcs_address"]}), flush=True)
    except Exception as exc:  # noqa: BLE001 - reported to the driver as one line
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        _reap_all()
        shutil.rmtree(temp_dir, ignore_errors=True)
        return  # the driver shows the log's tail, then removes it
    try:
        sys.stdin.buffer.read()  # returns when the driver closes the pipe or dies
    finally:
        try:
            ray.shutdown()
        finally:
            _reap_all()
            shutil.rmtree(temp_dir, ignore_errors=True)
            Path(config["log"]).unlink(missing_ok=True)  # a killed driver cannot


if __name__ == "__main__":
    _guard(json.loads(sys.argv[1]))
