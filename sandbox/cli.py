"""``evalsuite sandbox ...``: build the image, check isolation, clean up."""

from __future__ import annotations

import subprocess
import sys

import click

from evalsuite.sandbox import SandboxUnavailable

from . import container as ctr
from . import engine, image


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group(name="sandbox")
def sandbox() -> None:
    """Docker sandbox for executing model-written code."""


@sandbox.command()
@click.option("--offline", "method", flag_value="offline",
              help="debootstrap a Debian rootfs from the apt mirror (no registry needed).")
@click.option("--dockerfile", "method", flag_value="dockerfile",
              help="docker build sandbox/Dockerfile (needs a reachable registry).")
@click.option("--tag", default=image.IMAGE_TAG, show_default=True)
@click.option("--if-missing", is_flag=True, help="Do nothing if the image already exists.")
def build(method: str | None, tag: str, if_missing: bool) -> None:
    """Build the sandbox image (Dockerfile if a registry answers, else offline)."""
    try:
        client = engine.connect()
        if if_missing and image.image_present(client, tag):
            click.echo(f"image {tag} already present")
            return
        built = image.build(client, method or "auto", tag, log=click.echo)
    except SandboxUnavailable as exc:
        _fail(str(exc))
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        _fail(f"image build failed: {exc}")
    except Exception as exc:  # docker.errors.BuildError/APIError: one line, no traceback
        _fail(f"image build failed: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    click.echo(f"built {built}")


@sandbox.command()
@click.option("--tag", default=image.IMAGE_TAG, show_default=True)
def check(tag: str) -> None:
    """Verify engine, image, and that isolation holds inside the sandbox."""
    from .check import run_probes
    from .docker_sandbox import DockerSandbox

    try:
        client = engine.connect()
        click.echo(f"ok    engine reachable at {engine.engine_url()} "
                   f"(server {client.version().get('Version', '?')})")
        engine.require_image(client, tag)
        click.echo(f"ok    image {tag} present")
        memory_mb, pids = 256, 32
        with DockerSandbox(workers=2, image=tag, memory_mb=memory_mb, pids_limit=pids,
                           retry_timeouts=False) as sb:
            results = run_probes(sb, memory_mb, pids)
    except SandboxUnavailable as exc:
        _fail(str(exc))
    failed = 0
    for name, ok, detail in results:
        click.echo(f"{'ok' if ok else 'FAIL':5} {name}: {detail}")
        failed += not ok
    if failed:
        _fail(f"{failed} isolation check(s) failed")
    click.echo("sandbox isolation verified")


@sandbox.command()
@click.option("--all", "everything", is_flag=True,
              help="Also remove containers whose owner process is still alive.")
def clean(everything: bool) -> None:
    """Remove sandbox containers left behind by crashed runs."""
    try:
        client = engine.connect()
    except SandboxUnavailable as exc:
        _fail(str(exc))
    if everything:
        found = ctr.labelled(client)
        for c in found:
            ctr.force_remove(c["id"], client)
        click.echo(f"removed {len(found)} sandbox container(s)")
    else:
        click.echo(f"removed {ctr.sweep_stale(client)} stale sandbox container(s)")


if __name__ == "__main__":
    sandbox()
