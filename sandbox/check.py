"""Probes proving that isolation actually holds inside a live sandbox.

Each probe is an ordinary sandbox job; its observations come back through
``result_var`` and are judged on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evalsuite.sandbox import ExecJob, ExecResult, ExecStatus

from .container import SANDBOX_ENV


@dataclass(frozen=True)
class Probe:
    name: str
    source: str
    judge: Callable[[ExecResult], tuple[bool, str]]
    timeout_s: float = 10.0


def _value(judge: Callable[[Any], tuple[bool, str]]) -> Callable[[ExecResult], tuple[bool, str]]:
    def wrapped(r: ExecResult) -> tuple[bool, str]:
        if r.status is not ExecStatus.PASSED:
            return False, f"probe {r.status.value}: {r.detail} {r.stderr[-300:]}"
        return judge(r.value)
    return wrapped


NETWORK = """
import os, socket
r = {"ifaces": sorted(os.listdir("/sys/class/net")), "errors": []}
for host, port in (("1.1.1.1", 53), ("172.17.0.1", 2375), ("8.8.8.8", 443)):
    try:
        socket.create_connection((host, port), timeout=2).close()
        r["errors"].append(None)
    except OSError as e:
        r["errors"].append(type(e).__name__)
try:
    socket.getaddrinfo("pypi.org", 443)
    r["dns"] = True
except OSError:
    r["dns"] = False
"""

USER = """
import os
r = [os.getuid(), os.geteuid(), os.getgid()]
"""

ROOT_FS = """
mounts = {}
for line in open("/proc/mounts"):
    dev, mnt, fs, opts = line.split()[:4]
    mounts[mnt] = opts.split(",")
try:
    open("/etc/evalsuite-probe", "w")
    wrote = True
except OSError:
    wrote = False
r = {"root_ro": "ro" in mounts.get("/", []), "wrote": wrote,
     "tmp": mounts.get("/tmp", [])}
"""

PRIVILEGES = """
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
r = {"cap_eff": int(status["CapEff"].strip(), 16), "cap_bnd": int(status["CapBnd"].strip(), 16),
     "nnp": int(status["NoNewPrivs"].strip())}
"""

ENVIRONMENT = """
import os
r = sorted(os.environ)
"""

LIMITS = """
def read(*paths):
    for p in paths:
        try:
            return open(p).read().strip()
        except OSError:
            pass
    return None
r = {"mem": read("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
     "memsw": read("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "/sys/fs/cgroup/memory.swap.max"),
     "pids": read("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max")}
"""

MEMORY_BOMB = """
blocks = []
while True:
    blocks.append(bytearray(64 << 20))
"""

FORK_BOMB = """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError:
    pass
r = n
"""


def probes(memory_mb: int, pids_limit: int) -> list[Probe]:
    allowed_env = set(SANDBOX_ENV) | {"HOSTNAME"}
    mem_cap = (memory_mb + 128) << 20

    def network(v: Any) -> tuple[bool, str]:
        ok = v["ifaces"] == ["lo"] and None not in v["errors"] and not v["dns"]
        return ok, f"interfaces {v['ifaces']}, connects {v['errors']}, dns {v['dns']}"

    def limits(v: Any) -> tuple[bool, str]:
        ok = (v["mem"] is not None and int(v["mem"]) <= mem_cap
              and v["pids"] is not None and v["pids"] != "max" and int(v["pids"]) <= pids_limit)
        if v["memsw"] not in (None, "max") and v["mem"] is not None:
            # cgroup v1: mem+swap == mem means no swap; v2 reports swap alone.
            ok = ok and (int(v["memsw"]) == int(v["mem"]) or int(v["memsw"]) == 0)
        return ok, f"memory {v['mem']} (mem+swap {v['memsw']}), pids {v['pids']}"

    def oom(r: ExecResult) -> tuple[bool, str]:
        return r.status is ExecStatus.OOM, f"memory bomb -> {r.status.value} ({r.detail})"

    def forks(r: ExecResult) -> tuple[bool, str]:
        ok = r.status is ExecStatus.PASSED and isinstance(r.value, int) and r.value < pids_limit
        return ok, f"fork bomb stopped after {r.value} children -> {r.status.value}"

    return [
        Probe("network disabled", NETWORK, _value(network)),
        Probe("non-root user", USER,
              _value(lambda v: (0 not in v, f"uid/euid/gid {v}"))),
        Probe("read-only root filesystem", ROOT_FS,
              _value(lambda v: (v["root_ro"] and not v["wrote"] and "noexec" in v["tmp"],
                                f"root ro={v['root_ro']}, write to /etc={v['wrote']}, /tmp {v['tmp']}"))),
        Probe("no capabilities, no-new-privileges", PRIVILEGES,
              _value(lambda v: (v["cap_eff"] == 0 and v["cap_bnd"] == 0 and v["nnp"] == 1,
                                f"CapEff={v['cap_eff']:#x} CapBnd={v['cap_bnd']:#x} NoNewPrivs={v['nnp']}"))),
        Probe("minimal environment", ENVIRONMENT,
              _value(lambda v: (set(v) <= allowed_env, f"variables {v}"))),
        Probe("memory and pids limits set", LIMITS, _value(limits)),
        Probe("memory limit enforced", MEMORY_BOMB, oom),
        Probe("pids limit enforced", FORK_BOMB, forks),
    ]


def run_probes(sandbox: Any, memory_mb: int, pids_limit: int) -> list[tuple[str, bool, str]]:
    """Run every probe in ``sandbox``; returns (name, ok, detail) per probe."""
    plist = probes(memory_mb, pids_limit)
    jobs = [ExecJob(id=p.name, source=p.source, timeout_s=p.timeout_s, result_var="r")
            for p in plist]
    by_name = {r.id: r for r in sandbox.run(jobs)}
    out = []
    for p in plist:
        r = by_name.get(p.name)
        if r is None:
            out.append((p.name, False, "no result"))
            continue
        ok, detail = p.judge(r)
        out.append((p.name, ok, detail))
    return out
