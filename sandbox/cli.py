"""``evalsuite sandbox ...``: build the image, check isolation, clean up."""

from __future__ import annotations

import subprocess
import sys

import click

from evalsuite.sandbox import SandboxUnavailable

from . import container as ctr
from . import engine, image
from . import hosts as fleet


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group(name="sandbox")
def sandbox() -> None:
    """Docker sandbox for executing model-written code."""


host_option = click.option(
    "--host", "host_urls", multiple=True, metavar="URL[#workers=N]",
    help="A Docker engine (unix://, ssh://, tcp://...#tls=DIR); repeat for several. "
         "Default: $EVALSUITE_SANDBOX_HOSTS, else DOCKER_HOST or the local socket.")


def _hosts(host_urls: tuple[str, ...]) -> list[fleet.HostSpec]:
    return fleet.parse_hosts(",".join(host_urls)) if host_urls else fleet.configured_hosts()


@sandbox.command()
@click.option("--offline", "method", flag_value="offline",
              help="debootstrap a Debian rootfs from the apt mirror (no registry needed).")
@click.option("--dockerfile", "method", flag_value="dockerfile",
              help="docker build sandbox/Dockerfile (needs a reachable registry).")
@click.option("--tag", default=image.IMAGE_TAG, show_default=True)
@click.option("--if-missing", is_flag=True, help="Do nothing where the image already exists.")
@host_option
def build(method: str | None, tag: str, if_missing: bool, host_urls: tuple[str, ...]) -> None:
    """Build the sandbox image (Dockerfile if a registry answers, else offline).

    With several hosts it is built on the first and copied to the others
    (docker save | docker load), so every host runs the same image id."""
    try:
        first, *others = [(spec, fleet.connect(spec)) for spec in _hosts(host_urls)]
        spec, client = first
        if if_missing and image.image_present(client, tag):
            click.echo(f"image {tag} already present on {spec}")
        else:
            image.build(client, method or "auto", tag, log=click.echo)
            click.echo(f"built {tag} on {spec}")
        want = client.images.get(tag).id
        for spec, target in others:
            if image.image_present(target, tag) and target.images.get(tag).id == want:
                click.echo(f"image {tag} already on {spec}")
                continue
            image.copy_image(client, target, tag, log=click.echo)
            click.echo(f"loaded {tag} on {spec}")
    except SandboxUnavailable as exc:
        _fail(str(exc))
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        _fail(f"image build failed: {exc}")
    except Exception as exc:  # docker.errors.BuildError/APIError: one line, no traceback
        _fail(f"image build failed: {str(exc).splitlines()[0] if str(exc) else exc!r}")


@sandbox.command()
@click.option("--tag", default=image.IMAGE_TAG, show_default=True)
@host_option
def check(tag: str, host_urls: tuple[str, ...]) -> None:
    """Verify engine, image, and that isolation holds inside the sandbox, on every host."""
    from .check import run_probes
    from .docker_sandbox import DockerSandbox

    specs = _hosts(host_urls)
    failed, image_ids = 0, {}
    for spec in specs:
        where = f" on {spec}" if len(specs) > 1 else ""
        try:
            client = fleet.connect(spec)
            click.echo(f"ok    engine reachable at {spec} (server {client.version().get('Version', '?')})")
            engine.require_image(client, tag, host=spec.url if len(specs) > 1 else None)
            image_ids[spec.url] = client.images.get(tag).id
            click.echo(f"ok    image {tag} present{where} ({image_ids[spec.url][:19]})")
            memory_mb, pids = 256, 32
            with DockerSandbox(hosts=[spec], workers=2, image=tag, memory_mb=memory_mb, pids_limit=pids,
                               retry_timeouts=False) as sb:
                results = run_probes(sb, memory_mb, pids)
        except SandboxUnavailable as exc:
            if len(specs) == 1:
                _fail(str(exc))
            click.echo(f"FAIL  {spec}: {exc}")
            failed += 1
            continue
        for name, ok, detail in results:
            click.echo(f"{'ok' if ok else 'FAIL':5} {name}{where}: {detail}")
            failed += not ok
    mixed = fleet.mixed_images(tag, image_ids)
    if mixed:
        click.echo(f"FAIL  {mixed}")
        failed += 1
    if failed:
        _fail(f"{failed} isolation check(s) failed")
    click.echo("sandbox isolation verified" + (f" on {len(specs)} hosts" if len(specs) > 1 else ""))


@sandbox.command()
@click.option("--all", "everything", is_flag=True,
              help="Also remove containers whose owner process is still alive.")
@host_option
def clean(everything: bool, host_urls: tuple[str, ...]) -> None:
    """Remove sandbox containers left behind by crashed runs (on every host)."""
    for spec in _hosts(host_urls):
        try:
            client = fleet.connect(spec)
        except SandboxUnavailable as exc:
            _fail(str(exc))
        if everything:
            found = ctr.labelled(client)
            for c in found:
                ctr.force_remove(c["id"], client)
            removed = len(found)
        else:
            removed = ctr.sweep_stale(client)
        click.echo(f"removed {removed} {'' if everything else 'stale '}sandbox container(s) on {spec}")


if __name__ == "__main__":
    sandbox()
