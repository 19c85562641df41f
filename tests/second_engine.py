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
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
             "--shutdown-timeout=2"],  # a stop kills running containers after 2 s, not 15
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

    def crash(self) -> None:
        """Lose the engine as in a power cut: SIGKILL dockerd, its containerd,
        the container shims and every process in its containers at once."""
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)  # dockerd and its containerd (one session)
        self.proc.wait()
        self.proc = None
        for pid in self._engine_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # What a reboot clears: mounts and the runtime state in the exec root (a tmpfs
        # like /run on a real host); the data root survives, so start() works again.
        self._unmount()
        shutil.rmtree(self.root / "exec", ignore_errors=True)

    def _unmount(self) -> None:
        """Every mount under the root, deepest first (dockerd bind-mounts its data root)."""
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(str(self.root))), reverse=True):
            if subprocess.run(["umount", point], capture_output=True).returncode:
                subprocess.run(["umount", "-l", point], capture_output=True)

    def _engine_processes(self) -> list[int]:
        """Shims (they name this engine's exec root) and processes in its containers' cgroups."""
        pids = set()
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes()
            except OSError:
                continue
            if text.startswith(b"/usr/bin/containerd-shim") and str(self.root).encode() in text:
                pids.add(int(cmdline.parent.name))
        for procs in Path("/sys/fs/cgroup").glob(f"**/{self.cgroup}/**/cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                continue
        pids.discard(os.getpid())
        return sorted(pids)

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
        self._unmount()
        shutil.rmtree(self.root, ignore_errors=True)
        groups = [*Path("/sys/fs/cgroup").glob(f"*/{self.cgroup}"), *Path("/sys/fs/cgroup").glob(self.cgroup)]
        for group in groups:  # cgroup v1 controllers, or v2
            for sub in sorted((d for d in group.rglob("*") if d.is_dir()), reverse=True):
                sub.rmdir()
            group.rmdir()
