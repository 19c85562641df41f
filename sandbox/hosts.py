"""A fleet of Docker engines for the sandbox: parsing, connecting, draining.

A host list is comma-separated Docker endpoints, each optionally followed by
``#`` and options (a URL fragment, which is never sent anywhere)::

    unix:///var/run/docker.sock#workers=4
    ssh://ci@build-7#workers=16
    tcp://10.0.0.7:2376#workers=32&tls=/etc/evalsuite/certs/build-8

- ``workers``: concurrent containers on that engine (default: twice its CPUs,
  as the engine reports them);
- ``tls``: for ``tcp://``, a folder with ``ca.pem``, ``cert.pem`` and
  ``key.pem`` (mutual TLS, server verified).  Without it, ``tcp://`` uses
  ``DOCKER_CERT_PATH`` when ``DOCKER_TLS_VERIFY`` is set, like the docker CLI,
  and plain TCP otherwise (port 2375: only on a trusted network).

``ssh://`` runs the system ``ssh`` client (keys, agent and ``~/.ssh/config``
as for any ssh command); the remote user must be allowed to use its engine.
The list comes from ``--sandbox-hosts`` or ``EVALSUITE_SANDBOX_HOSTS``; without
either, the one engine at ``DOCKER_HOST`` or the local socket is used.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import docker
from docker.constants import IS_WINDOWS_PLATFORM
from docker.errors import DockerException
from docker.utils import parse_host

from evalsuite.errors import UserError
from evalsuite.sandbox import HOSTS_ENV, SandboxUnavailable

from . import engine

SCHEMES = ("unix", "ssh", "tcp", "npipe")
HEALTH_TIMEOUT_S = 5
# Container starts in a row that fail on one engine, none succeeding, before it
# is drained although it answers (its image deleted, its disk full).
START_FAILURES_TO_DRAIN = 3


@dataclass(frozen=True)
class HostSpec:
    """One Docker endpoint from a host list."""

    url: str  # without the options fragment
    workers: int | None = None  # None: twice the engine's CPU count
    tls: str | None = None  # folder with ca.pem, cert.pem, key.pem

    def __str__(self) -> str:
        return self.url


def parse_hosts(text: str) -> list[HostSpec]:
    """Parse a host list (see the module doc); raises ``UserError`` on bad input."""
    hosts, engines = [], []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        url, _, options = entry.partition("#")
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # e.g. an unclosed IPv6 bracket
            raise UserError(f"sandbox host '{entry}': not a Docker endpoint ({exc})") from None
        scheme = parts.scheme
        if scheme not in SCHEMES:
            raise UserError(f"sandbox host '{entry}': expected unix://, ssh:// or tcp:// (got '{scheme or url}')")
        if scheme == "ssh" and not parts.hostname:  # the docker SDK would read it as the local machine
            raise UserError(f"sandbox host '{entry}': ssh:// needs a host (ssh://USER@HOST)")
        opts = dict(parse_qsl(options, keep_blank_values=True))
        unknown = set(opts) - {"workers", "tls"}
        if unknown:
            raise UserError(f"sandbox host '{entry}': unknown option(s) {', '.join(sorted(unknown))} (known: workers, tls)")
        workers = None
        if "workers" in opts:
            if not opts["workers"].isdigit() or int(opts["workers"]) < 1:
                raise UserError(f"sandbox host '{entry}': workers must be a positive integer")
            workers = int(opts["workers"])
        tls = opts.get("tls")
        if tls is not None:
            if scheme != "tcp":
                raise UserError(f"sandbox host '{entry}': tls= applies to tcp:// endpoints only")
            missing = [f for f in ("ca.pem", "cert.pem", "key.pem") if not (Path(tls) / f).is_file()]
            if missing:
                raise UserError(f"sandbox host '{entry}': {tls} lacks {', '.join(missing)}")
        hosts.append(HostSpec(url, workers, tls))
        engines.append(_engine_address(entry, url, tls is not None))
    if not hosts:
        raise UserError("the sandbox host list is empty")
    if len(set(engines)) != len(hosts):
        raise UserError("a sandbox host is listed twice")
    return hosts


def _engine_address(entry: str, url: str, tls: bool) -> str:
    """The engine ``url`` reaches, as the docker SDK will connect to it (so two
    spellings of one engine compare equal); ``UserError`` for a malformed URL,
    which would otherwise surface only when the sandbox first connects."""
    try:
        return parse_host(url, IS_WINDOWS_PLATFORM, tls=tls)
    except (DockerException, ValueError) as exc:
        raise UserError(f"sandbox host '{entry}': not a Docker endpoint ({exc})") from None


def mixed_images(tag: str, image_ids: dict[str, str]) -> str | None:
    """Why hosts (url -> image id of ``tag``) must not share a run, or None when
    they hold one image: a verdict must not depend on the host a job lands on."""
    if len(set(image_ids.values())) <= 1:
        return None
    first, *others = image_ids
    return (f"the sandbox hosts hold different images tagged {tag} "
            f"({', '.join(f'{url}: {image[:19]}' for url, image in image_ids.items())}): "
            f"copy one with `evalsuite sandbox build --host {first} {' '.join(f'--host {o}' for o in others)}`")


def configured_hosts(base_url: str | None = None) -> list[HostSpec]:
    """The hosts to use: ``EVALSUITE_SANDBOX_HOSTS``, else the one default engine."""
    text = os.environ.get(HOSTS_ENV)
    if text and base_url is None:
        return parse_hosts(text)
    return [HostSpec(engine.engine_url(base_url))]


def connect(spec: HostSpec, timeout_s: int = 120) -> docker.DockerClient:
    """A client for ``spec``, or ``SandboxUnavailable`` saying how to fix it."""
    return engine.connect(spec.url, timeout_s=timeout_s, tls=_tls_config(spec))


def _tls_config(spec: HostSpec) -> docker.tls.TLSConfig | bool | None:
    cert_dir = spec.tls
    if cert_dir is None and spec.url.startswith("tcp://") and os.environ.get("DOCKER_TLS_VERIFY"):
        cert_dir = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    if cert_dir is None:
        return None
    d = Path(cert_dir)
    return docker.tls.TLSConfig(client_cert=(str(d / "cert.pem"), str(d / "key.pem")), ca_cert=str(d / "ca.pem"), verify=True)


@dataclass(eq=False)
class Host:
    """A live engine in a sandbox's pool; drained for good once it fails."""

    spec: HostSpec
    workers: int
    image_id: str = ""
    drained: str | None = None  # why, once drained
    start_failures: int = 0  # container starts that failed in a row
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.spec.url

    def drain(self, why: str) -> bool:
        """Mark the host failed; True for the call that drained it."""
        with self._lock:
            if self.drained is not None:
                return False
            self.drained = why
            return True

    def start_failed(self) -> bool:
        """Count a container start that failed here; True once ``START_FAILURES_TO_DRAIN``
        have failed in a row (the caller drains the host)."""
        with self._lock:
            self.start_failures += 1
            return self.start_failures >= START_FAILURES_TO_DRAIN

    def started(self) -> None:
        """A container started here: the engine can start them."""
        with self._lock:
            self.start_failures = 0

    def responds(self) -> bool:
        """Whether the engine still answers (a failed container is not a failed host)."""
        try:
            client = connect(self.spec, timeout_s=HEALTH_TIMEOUT_S)
        except SandboxUnavailable:
            return False
        client.close()
        return True
