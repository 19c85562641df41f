"""A second, private Docker engine on this machine, for the sandbox fleet tests.

It has its own socket, data root, exec root, pidfile and cgroup parent, no
bridge and no iptables rules, so the shared main engine never notices it.
Needs root and ``dockerd`` (``sandbox/setup_engine.sh`` installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


class SecondEngine:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="evalsuite-engine-", dir="/var/tmp"))
        self.cgroup = self.root.name
        self.url = f"unix://{self.root}/docker.sock"
        (self.root / "daemon.json").write_text("{}")  # not the main engine's /etc/docker/daemon.json
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import docker

        self.proc = subprocess.Popen(
            ["dockerd", "--host", self.url, "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "docker.pid"),
             "--config-file", str(self.root / "daemon.json"), "--cgroup-parent", self.cgroup,
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"],
            stdout=open(self.root / "dockerd.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                docker.DockerClient(base_url=self.url, timeout=5).ping()
                return
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"second dockerd did not start: {self.log_tail()}") from None
                time.sleep(0.3)

    def stop(self) -> None:
        """Stop the engine as an administrator would (SIGTERM: containers are stopped)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def client(self):  # -> docker.DockerClient
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join((self.root / "dockerd.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def remove(self) -> None:
        """Stop it and delete every trace: files, mounts' leftovers, cgroups."""
        self.stop()
        subprocess.run(["umount", "-R", str(self.root)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        for group in Path("/sys/fs/cgroup").glob(f"*/{self.cgroup}"):
            try:
                group.rmdir()
            except OSError:
                pass
        for group in Path("/sys/fs/cgroup").glob(self.cgroup):  # cgroup v2
            try:
                group.rmdir()
            except OSError:
                pass
