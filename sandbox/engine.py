"""Connecting to the Docker engine, with one-line fix-it errors."""

from __future__ import annotations

import os
from typing import Any

import docker

from evalsuite.sandbox import SandboxUnavailable

from .image import IMAGE_TAG, image_present

SETUP_HINT = "run `sudo sandbox/setup_engine.sh` (installs docker.io and starts dockerd) or set DOCKER_HOST"


def engine_url(base_url: str | None = None) -> str:
    url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return url.replace("http+unix://", "unix://")


def connect(base_url: str | None = None, timeout_s: int = 120, tls: Any = None) -> docker.DockerClient:
    """A client for a reachable engine, or SandboxUnavailable saying how to fix it.

    ``ssh://`` endpoints go through the system ssh client; ``tls`` is a
    ``docker.tls.TLSConfig`` for ``tcp://`` endpoints."""
    url = engine_url(base_url)
    try:
        client = docker.DockerClient(base_url=url, version="auto", timeout=timeout_s, tls=tls or False,
                                     use_ssh_client=url.startswith("ssh://"))
        client.ping()
        return client
    except Exception as exc:  # DockerException, ConnectionError, PermissionError...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Permission denied" in reason:
            hint = "add your user to the `docker` group or use sudo"
        elif url.startswith(("ssh://", "tcp://")):  # an engine on another machine: no local setup starts it
            hint = f"check that the host is up and its engine answers there (`docker -H {url} info`)"
        else:
            hint = SETUP_HINT
        raise SandboxUnavailable(
            f"Docker engine not reachable at {url}: {hint} ({reason[:160]})") from None


def require_image(client: docker.DockerClient, tag: str = IMAGE_TAG, host: str | None = None) -> None:
    """``host``: name the engine (and the fix for it) when there are several."""
    if not image_present(client, tag):
        if host is not None:
            raise SandboxUnavailable(f"sandbox image {tag} missing on {host}: run `evalsuite sandbox build --host {host}`")
        raise SandboxUnavailable(
            f"sandbox image {tag} missing: run `evalsuite sandbox build` "
            "(or `python -m sandbox.cli build`)")
