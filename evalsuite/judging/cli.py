"""``evalsuite judge --run DIR --judge MODEL``: judge a run's outputs again, e.g. with another judge.

Nothing is generated (as ``inspect score``): the judged tasks of DIR are
rebuilt with DIR's parameters, their stored outputs are scored with the new
judge, and a new run directory is written whose ``run.json`` links to DIR
(``generation_run``).  Continue an interrupted one with
``evalsuite run --resume NEW_DIR``; finished judgments are never asked again.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console

from evalsuite import registry
from evalsuite.errors import UserError, key_values


@click.command("judge")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory whose outputs are judged (e.g. made with --generate-only).")
@click.option("--judge", "judge_spec", required=True, metavar="MODEL", help="The judge: any model spec, as --model.")
@click.option("--judge-arg", "-J", "judge_args", multiple=True, metavar="KEY=VALUE",
              help="Judge option, as for `evalsuite run -J`.")
@click.option("--tasks", "-t", default=None, help="Comma-separated judged tasks of the run (default: all of them).")
@click.option("--output-dir", "-o", default=None, type=click.Path(file_okay=False),
              help="Where the new run directory goes (default: next to --run).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Local mirror of benchmark files, if not the one the run used.")
def judge(run_dir: Path, judge_spec: str, judge_args: tuple[str, ...], tasks: str | None, output_dir: str | None,
          data_dir: str | None) -> None:
    """Judge the outputs of RUN again with another judge, without generating; writes a new run directory."""
    from evalsuite.cli import print_summary
    from evalsuite.rundir import RunDir
    from evalsuite.runner import RunConfig, _resumed_config, run

    source = RunDir.existing(run_dir)
    prov = source.provenance()
    stored = _resumed_config(prov.command_config, RunConfig())
    judged = [t for t in stored.tasks if registry.load("task", t).judged]
    chosen = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else judged
    unknown = [t for t in chosen if t not in judged]
    if unknown:
        raise UserError(f"{', '.join(unknown)}: not a judged task of {run_dir} (judged: {', '.join(judged) or 'none'})")
    if not chosen:
        raise UserError(f"{run_dir} has no judged tasks ({', '.join(stored.tasks)})")
    takes = {p for t in chosen for p in registry.load("task", t).parameters()}
    config = replace(
        stored,
        tasks=tuple(chosen),
        task_params={k: v for k, v in stored.task_params.items() if k in chosen},
        global_params={k: v for k, v in stored.global_params.items() if k in takes},
        judge=judge_spec,
        judge_args=key_values(judge_args, "-J"),
        source_run=str(run_dir.resolve()),
        output_dir=output_dir or str(run_dir.resolve().parent),
        data_dir=data_dir or stored.data_dir,
        generate_only=False,
    )
    rundir = run(config, console=Console(stderr=True))
    print_summary(rundir.results(), Console(width=max(100, Console().width)))
    click.echo(f"run directory: {rundir.path} (judged outputs of {run_dir})")
