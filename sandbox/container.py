"""Hardened sandbox containers: creation, labelling, and guaranteed removal.

Every container is started with the executor as PID 1 and stdin attached
once (``stdin_once``): if the host process dies, even by SIGKILL, the engine
closes the executor's stdin, the executor exits and ``auto_remove`` deletes
the container.  Belt and braces: containers are also removed in ``finally``
blocks, at interpreter exit and on SIGTERM/SIGHUP, and containers left behind
by dead owners are swept whenever a sandbox starts.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container

LABEL = "evalsuite.sandbox"
OWNER_LABEL = "evalsuite.sandbox.owner"
WORK_DIR = "/tmp"

# The complete environment of sandboxed code: nothing from the host leaks in.
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORK_DIR,
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",  # identical set/dict order in every container
    "PYTHONDONTWRITEBYTECODE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

EXECUTOR_SOURCE = (Path(__file__).with_name("executor.py")).read_text()


@dataclass(frozen=True)
class Limits:
    """Per-worker resource limits; a job gets ``memory_mb`` of address space."""

    memory_mb: int = 512
    cpus: float = 1.0
    pids: int = 64
    tmpfs_mb: int = 64
    output_bytes: int = 64 * 1024

    def executor_limits(self, cpu_s: float) -> dict[str, Any]:
        return {
            "mem_bytes": self.memory_mb << 20,
            "cpu_s": cpu_s,
            "fsize_bytes": self.tmpfs_mb << 20,
            "nproc": self.pids,
            "out_cap": self.output_bytes,
        }


def _proc_start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def owner_id() -> str:
    """host:pid:start-time, so a recycled pid is not mistaken for us."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start_time(pid)}"


def _owner_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True  # another machine sharing the engine: not ours to judge
    pid_s, _, start = rest.partition(":")
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    return Path(f"/proc/{pid}").exists() and _proc_start_time(pid) == start


def labelled(client: docker.DockerClient) -> list[dict]:
    """Id and labels of every sandbox container.

    The low-level list does no per-container inspect, so a container that an
    auto_remove deletes meanwhile cannot make the listing fail (the SDK's
    ``containers.list`` raises NotFound in that race).
    """
    return [
        {"id": c["Id"], "labels": c.get("Labels") or {}}
        for c in client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
    ]


def sweep_stale(client: docker.DockerClient) -> int:
    """Remove labelled containers whose owning process is gone."""
    removed = 0
    for c in labelled(client):
        if not _owner_alive(c["labels"].get(OWNER_LABEL, "")):
            force_remove(c["id"], client)
            removed += 1
    return removed


def force_remove(container: Container | str, client: docker.DockerClient | None = None) -> None:
    try:
        if isinstance(container, str):
            assert client is not None
            client.api.remove_container(container, force=True)
        else:
            container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        # 409 "removal already in progress" (auto_remove raced us) is fine.
        if getattr(exc, "status_code", None) != 409:
            raise
    finally:
        _registry.forget(container if isinstance(container, str) else container.id)


def create(client: docker.DockerClient, image: str, limits: Limits, uid: int) -> str:
    """Create (not start) a hardened executor container; returns its id.

    The low-level API is used because docker-py has no ``stdin_once`` keyword.
    """
    api = client.api
    mem = f"{limits.memory_mb + 128}m"  # job budget + executor and page cache slack
    host_config = api.create_host_config(
        network_mode="none",
        mem_limit=mem,
        memswap_limit=mem,  # equal: no swap
        mem_swappiness=0,
        pids_limit=limits.pids,
        nano_cpus=int(limits.cpus * 1e9),
        read_only=True,
        tmpfs={WORK_DIR: f"rw,nosuid,nodev,noexec,size={limits.tmpfs_mb}m,mode=1777"},
        shm_size="8m",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        ulimits=[docker.types.Ulimit(name="core", soft=0, hard=0)],
        log_config=docker.types.LogConfig(type="none"),
        auto_remove=True,
        init=False,  # the executor is PID 1 on purpose (see executor.py)
    )
    config = api.create_container_config(
        image,
        command=["python3", "-s", "-c", EXECUTOR_SOURCE],
        user=f"{uid}:{uid}",
        environment=SANDBOX_ENV,
        working_dir=WORK_DIR,
        labels={LABEL: "1", OWNER_LABEL: owner_id()},
        hostname="sandbox",
        stdin_open=True,
        tty=False,
        network_disabled=True,
        host_config=host_config,
    )
    config["StdinOnce"] = True  # docker-py has no keyword for it
    config["AttachStdin"] = config["AttachStdout"] = config["AttachStderr"] = True
    cid = api.create_container_from_config(config)["Id"]
    _registry.add(client, cid)
    return cid


class _Registry:
    """Live containers of this process, removed at exit or on SIGTERM/SIGHUP."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, docker.DockerClient] = {}
        self.created: set[str] = set()  # every id ever created here (for audits)
        self._installed = False

    def add(self, client: docker.DockerClient, cid: str) -> None:
        with self._lock:
            self._live[cid] = client
            self.created.add(cid)
            if not self._installed:
                self._installed = True
                atexit.register(self.remove_all)
                self._install_signal_handlers()

    def forget(self, cid: str) -> None:
        with self._lock:
            self._live.pop(cid, None)

    def remove_all(self) -> None:
        with self._lock:
            live = list(self._live.items())
        for cid, client in live:
            try:
                force_remove(cid, client)
            except Exception:
                pass

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_DFL:
                continue  # the application has its own policy; atexit still runs

            def handler(signum: int, frame: Any) -> None:
                self.remove_all()
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

            signal.signal(sig, handler)


_registry = _Registry()


def created_here() -> set[str]:
    """Ids of all containers this process has created (live or removed)."""
    return set(_registry.created)
