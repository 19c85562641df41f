"""``evalsuite leaderboard``: build a static leaderboard site from run directories."""

from __future__ import annotations

from pathlib import Path

import click

from leaderboards.builder import build_site
from leaderboards.config import load_config


@click.group()
def leaderboard() -> None:
    """Static leaderboard sites from run directories."""


@leaderboard.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path), help="Site folder (replaced if it holds a previous site).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="TOML display settings overriding leaderboards/config.toml.")
def build(run_dirs: tuple[Path, ...], out: Path, config_path: Path | None) -> None:
    """Render RUN_DIRS into a static site at --out (open index.html; no server needed)."""
    config = load_config(config_path)
    report = build_site(list(run_dirs), out, config)
    click.echo(
        f"built {out}/index.html: {report.models} models × {report.tasks} tasks from {report.runs} runs, "
        f"{report.samples} samples, {report.files} files, {report.bytes / 1e6:.1f} MB in {report.seconds:.2f} s"
    )
