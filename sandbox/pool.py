"""Long-lived sandbox workers: one container + executor channel each.

A worker runs jobs one after another on the same container (a fork per job
inside), and throws the container away after anything that may have damaged
it: a timeout, an OOM, a dirty cleanup, a broken or desynchronised channel.
"""

from __future__ import annotations

import secrets
import signal
from dataclasses import dataclass, field
from typing import Any

import docker

from evalsuite.sandbox import ExecJob, ExecResult, ExecStatus

from . import container as ctr
from .channel import Channel, ChannelError
from .values import BadValue, decode

START_TIMEOUT_S = 60.0
# Host-side grace beyond the job's own deadline: the executor needs time to
# kill, reap and wipe.  Past this the executor itself is considered hung.
CHANNEL_GRACE_S = 15.0
CHILD_SETUP_FAILED = 70  # exit code the executor uses for its own failures


class WorkerBroken(Exception):
    """The container or executor failed; the job must be retried elsewhere."""

    def __init__(self, detail: str, oom: bool = False) -> None:
        super().__init__(detail)
        self.oom = oom


@dataclass
class Attempt:
    result: ExecResult
    replace_worker: bool


class Worker:
    def __init__(self, client: docker.DockerClient, image: str, limits: ctr.Limits,
                 uid: int, run_as_main: bool = True, preload: dict[str, str] | None = None) -> None:
        self.client = client
        self.run_as_main = run_as_main
        self.preload = preload or {}
        self.image = image
        self.limits = limits
        self.uid = uid
        self.container: str | None = None  # container id
        self.channel: Channel | None = None
        self.jobs_run = 0

    # -- lifecycle --------------------------------------------------------
    def start(self) -> None:
        self.container = ctr.create(self.client, self.image, self.limits, self.uid)
        try:
            # Attach before start so no executor output can be missed.
            sock = self.client.api.attach_socket(
                self.container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self.channel = Channel(sock)
            self.client.api.start(self.container)
            token = secrets.token_hex(8)
            self.channel.send({"op": "hello", "token": token, "modules": self.preload,
                               "limits": self.limits.executor_limits(0)})
            ready = self.channel.recv(START_TIMEOUT_S)
            if ready.get("op") != "ready" or ready.get("token") != token:
                raise ChannelError(f"bad handshake: {ready!r:.200}")
            if ready.get("uid") == 0:
                raise ChannelError("executor runs as root; refusing to use this container")
        except BaseException:
            self.stop()
            raise
        self.jobs_run = 0

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.container is not None:
            try:
                ctr.force_remove(self.container, self.client)
            except Exception:
                pass
            self.container = None

    @property
    def alive(self) -> bool:
        return self.channel is not None and not self.channel.closed

    def _container_oom_killed(self) -> bool:
        try:
            state = self.client.api.inspect_container(self.container)["State"]
            return bool(state.get("OOMKilled"))
        except Exception:
            return False

    # -- jobs (pipelined: the next job waits in the executor's stdin) ------
    def send(self, task: Task, wait_s: float = CHANNEL_GRACE_S) -> None:
        """Queue ``task`` in the executor; raises WorkerBroken.

        ``wait_s`` bounds how long a write may block: a large source only fits
        once the executor has finished the jobs queued before it."""
        assert self.channel is not None
        task.nonce = secrets.token_hex(16)
        request = {"op": "run", "id": task.job.id, "nonce": task.nonce,
                   "source": task.job.source, "timeout": task.timeout_s,
                   "result_var": task.job.result_var, "as_main": self.run_as_main,
                   "limits": self.limits.executor_limits(task.timeout_s)}
        try:
            self.channel.send(request, timeout_s=wait_s)
        except ChannelError as exc:
            raise WorkerBroken(f"executor lost: {exc}") from exc

    def receive(self, task: Task) -> Attempt:
        """The result of ``task``, the oldest job sent; raises WorkerBroken."""
        assert self.channel is not None
        try:
            raw = self.channel.recv(task.timeout_s + CHANNEL_GRACE_S)
        except ChannelError as exc:
            oom = self._container_oom_killed()
            raise WorkerBroken(f"executor lost: {exc}", oom=oom) from exc
        if raw.get("op") != "result" or raw.get("id") != task.job.id:
            raise WorkerBroken(f"protocol desync: unexpected message {raw!r:.200}")
        self.jobs_run += 1
        status, detail, value = classify(raw, task.nonce, task.timeout_s)
        result = ExecResult(id=task.job.id, status=status, detail=detail,
                            stdout=raw.get("stdout", ""), stderr=raw.get("stderr", ""),
                            duration_s=float(raw.get("wall_s") or 0.0), value=value)
        replace = (not raw.get("clean", False)) or status in (
            ExecStatus.TIMED_OUT, ExecStatus.OOM, ExecStatus.SANDBOX_ERROR)
        return Attempt(result, replace)


@dataclass
class Task:
    """A job plus its retry bookkeeping."""

    job: ExecJob
    timeout_s: float
    nonce: str = ""
    errors: list[str] = field(default_factory=list)
    timeouts: int = 0
    finished: bool = False  # its verdict was emitted (exactly once)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def classify(raw: dict[str, Any], nonce: str, timeout_s: float) -> tuple[ExecStatus, str, Any]:
    """Turn the executor's raw observations into a verdict.

    Only a trampoline report carrying this job's nonce (and sent by the job's
    own process, which the executor checks via SCM_CREDENTIALS) can pass.
    """
    report = raw.get("report")
    exit_code = raw.get("exit_code")
    cpu = float(raw.get("cpu_s") or 0.0)
    if raw.get("timed_out"):
        return (ExecStatus.TIMED_OUT,
                f"killed after {timeout_s:.1f}s wall-clock timeout (cpu {cpu:.2f}s)", None)
    if isinstance(report, dict):
        if report.get("nonce") != nonce:
            return ExecStatus.FAILED, "completion report with a wrong nonce (forged)", None
        kind = report.get("kind")
        if kind == "ok":
            if exit_code != 0:
                return (ExecStatus.FAILED,
                        f"process did not exit cleanly after completing (exit {exit_code})", None)
            if "value" not in report:
                return ExecStatus.PASSED, "", None
            try:
                return ExecStatus.PASSED, "", decode(report["value"])
            except BadValue as exc:
                return ExecStatus.FAILED, f"result value rejected: {exc}", None
        if kind == "error":
            if report.get("oom"):
                return ExecStatus.OOM, str(report.get("text") or "MemoryError"), None
            if raw.get("cgroup_oom"):  # e.g. a subprocess was OOM-killed under it
                return (ExecStatus.OOM, "container memory limit hit (OOM killer fired): "
                        + str(report.get("text") or report.get("etype")), None)
            return ExecStatus.FAILED, str(report.get("text") or report.get("etype")), None
        if kind == "bad_value":
            return ExecStatus.FAILED, str(report.get("detail")), None
        return ExecStatus.FAILED, f"unknown completion report kind {kind!r:.40}", None
    if raw.get("report_oversize"):
        return ExecStatus.FAILED, "completion report too large (result value over 8 MiB?)", None
    if raw.get("report_rejected"):
        return ExecStatus.FAILED, "completion report sent by a process other than the job", None
    if raw.get("cgroup_oom"):
        return ExecStatus.OOM, "killed by the container memory limit", None
    if exit_code == CHILD_SETUP_FAILED and not raw.get("started"):  # after the start the exit is the program's
        stderr = str(raw.get("stderr", ""))[-300:]
        return ExecStatus.SANDBOX_ERROR, f"sandbox child setup failed: {stderr}", None
    if isinstance(exit_code, int) and exit_code < 0:
        sig = -exit_code
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= timeout_s):
            return ExecStatus.TIMED_OUT, f"CPU time limit exceeded (cpu {cpu:.2f}s)", None
        return ExecStatus.FAILED, f"program killed by {_signal_name(sig)}", None
    return (ExecStatus.FAILED,
            f"program exited (code {exit_code}) before running to completion "
            "(sys.exit/os._exit/atexit, or its result could not be reported)", None)
