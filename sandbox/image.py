"""Building the sandbox image: offline via debootstrap, or from the Dockerfile.

Container registries are often unreachable (CI, air-gapped boxes), so the
default path bootstraps a minimal Debian with python3 (+ numpy) from the apt
mirror this machine already uses and ``docker import``s it.  Where a registry
is reachable the Dockerfile (``python:3.11-slim`` based) is used instead.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import docker

IMAGE_REPO = "evalsuite-sandbox"
IMAGE_VERSION = "0.1"
IMAGE_TAG = f"{IMAGE_REPO}:{IMAGE_VERSION}"
IMAGE_LABEL = "evalsuite.sandbox.image"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-numpy")
# Dropped from the rootfs: no use to a sandboxed program, and apt/dpkg
# metadata would only help someone poking around inside.
PRUNE = (
    "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "usr/share/doc/*",
    "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*", "var/log/*",
)

Log = Callable[[str], None]


def image_present(client: docker.DockerClient, tag: str = IMAGE_TAG) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def registry_reachable(host: str = "registry-1.docker.io", timeout_s: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def apt_mirror() -> str:
    """The Debian mirror apt is configured with here (deb822 or one-line format)."""
    files = glob.glob("/etc/apt/sources.list.d/*.sources") + glob.glob("/etc/apt/sources.list")
    files += glob.glob("/etc/apt/sources.list.d/*.list")
    for path in files:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for m in re.finditer(r"^(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M):
            uri = m.group(1).rstrip("/")
            if uri.endswith("/debian") and "security" not in uri:
                return uri
    return DEFAULT_MIRROR


def _root_prefix() -> list[str]:
    """debootstrap and reading the rootfs need root: use sudo when not root."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo", "-n"]
    raise RuntimeError("the offline build runs debootstrap and needs root (or passwordless sudo)")


def build_offline(client: docker.DockerClient, tag: str = IMAGE_TAG,
                  mirror: str | None = None, log: Log = print) -> str:
    """debootstrap a minimal Debian with python3 and import it as ``tag``."""
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        raise RuntimeError("debootstrap is not installed: run `sudo sandbox/setup_engine.sh`")
    sudo = _root_prefix()
    mirror = mirror or apt_mirror()
    tmp = tempfile.mkdtemp(prefix="evalsuite-rootfs-", dir="/var/tmp")
    try:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {SUITE} from {mirror} (about a minute)...")
        subprocess.run(
            [*sudo, "debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
             SUITE, str(rootfs), mirror],
            check=True, stdout=subprocess.DEVNULL,
        )
        prune = [str(rootfs / pattern) for pattern in PRUNE]
        subprocess.run([*sudo, "sh", "-c", "rm -rf " + " ".join(prune)], check=True)
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run([*sudo, "tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
                       check=True)
        subprocess.run([*sudo, "chmod", "a+r", str(tarball)], check=True)
        log(f"importing {tag}...")
        repo, _, version = tag.rpartition(":")
        client.api.import_image_from_file(
            str(tarball), repository=repo, tag=version,
            changes=[
                "ENV PATH=/usr/local/bin:/usr/bin:/bin",
                "ENV LANG=C.UTF-8",
                f"LABEL {IMAGE_LABEL}={IMAGE_VERSION}",
                "USER 65534:65534",
                'CMD ["python3"]',
            ],
        )
    finally:
        subprocess.run([*_root_prefix(), "rm", "-rf", tmp], check=False)
    return tag


def build_dockerfile(client: docker.DockerClient, tag: str = IMAGE_TAG, log: Log = print) -> str:
    """Build from sandbox/Dockerfile (needs a reachable registry)."""
    context = Path(__file__).parent
    log(f"docker build {context} -t {tag} ...")
    client.images.build(path=str(context), dockerfile="Dockerfile", tag=tag, rm=True,
                        labels={IMAGE_LABEL: IMAGE_VERSION})
    return tag


def copy_image(source: docker.DockerClient, target: docker.DockerClient, tag: str = IMAGE_TAG,
               log: Log = print) -> str:
    """``docker save | docker load`` between two engines, streamed (no temp file).

    Returns the image id, which is the same on both ends; raises RuntimeError
    if the target ends up with a different one."""
    want = source.images.get(tag).id
    log(f"copying {tag} ({want[:19]}) ...")
    for _ in target.api.load_image(source.api.get_image(tag)):
        pass  # progress messages; errors raise
    got = target.images.get(tag).id
    if got != want:
        raise RuntimeError(f"{tag} arrived as {got[:19]}, expected {want[:19]}")
    return got


def build(client: docker.DockerClient, method: str = "auto", tag: str = IMAGE_TAG,
          log: Log = print) -> str:
    """``method``: "auto" (Dockerfile if a registry answers), "offline" or "dockerfile"."""
    if method == "auto":
        method = "dockerfile" if registry_reachable() else "offline"
    if method == "dockerfile":
        return build_dockerfile(client, tag, log)
    return build_offline(client, tag, log=log)
