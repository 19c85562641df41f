"""The ``evalsuite`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from evalsuite import __version__, registry
from evalsuite.errors import UserError
from evalsuite.records import MetricValue, ResultsSummary, TaskResult

# Offline by default unless the user says otherwise: transformers otherwise
# retries the hub for ~25 s before falling back to local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SUMMARY_WIDTH = 130  # columns of the summary table when stdout is not a terminal (fits BBH's subtask names)


def _key_values(values: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} expects KEY=VALUE, got '{item}'")
        out[key.strip()] = value
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evalsuite")
def cli() -> None:
    """Evaluate language models with typed, reproducible per-sample records."""


@cli.command()
@click.option("--model", "-m", default=None, help="hf id, folder, .gguf file, alias (smollm2-135m), or BACKEND:MODEL. Default: the embedded SmolLM2-135M-Instruct.")
@click.option("--tasks", "-t", default="bbh", show_default=True, help="Comma-separated task names.")
@click.option("--task-param", "-T", "task_params", multiple=True, metavar="[TASK.]KEY=VALUE", help="Task parameter, e.g. -T variant=zeroshot or -T bbh.shots=0.")
@click.option("--model-arg", "-M", "model_args", multiple=True, metavar="KEY=VALUE", help="Backend option, e.g. -M cache=static.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Samples per subtask.")
@click.option("--output-dir", "-o", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--batch-size", default="auto", show_default=True, help="Integer or 'auto'.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--dtype", default="auto", show_default=True, help="auto, float32, bfloat16 or float16.")
@click.option("--seed", type=int, default=1234, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Local mirror of benchmark files (else $EVALSUITE_DATA_DIR, else the HF hub).")
@click.option("--chat-template/--no-chat-template", default=None, help="Apply the model's chat template (default: when it has one).")
@click.option("--system-message", default=None, help="Run-level system message (recorded in provenance).")
@click.option("--generate-only", is_flag=True, help="Stop after generation; score later with `evalsuite score`.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False), default=None, help="Continue an interrupted run directory.")
def run(**opts: object) -> None:
    """Evaluate a model on tasks and write DIR/<run-id>/{run.json,samples.jsonl,results.json}."""
    from evalsuite.runner import RunConfig, run as run_eval

    if not str(opts["batch_size"]).isdigit() and opts["batch_size"] != "auto":
        raise UserError(f"--batch-size must be a positive integer or 'auto', got '{opts['batch_size']}'")
    global_params, task_params = {}, {}
    for key, value in _key_values(opts["task_params"], "-T").items():
        task, dot, name = key.rpartition(".")
        if dot:
            task_params.setdefault(task, {})[name] = value
        else:
            global_params[name] = value
    tasks = tuple(t.strip() for t in str(opts["tasks"]).split(",") if t.strip())
    if not tasks:
        raise UserError("--tasks is empty")
    config = RunConfig(
        model=opts["model"],
        tasks=tasks,
        task_params=task_params,
        global_params=global_params,
        limit=opts["limit"],
        output_dir=str(opts["output_dir"]),
        batch_size=str(opts["batch_size"]),
        device=str(opts["device"]),
        dtype=str(opts["dtype"]),
        seed=int(opts["seed"]),
        data_dir=opts["data_dir"],
        chat_template=opts["chat_template"],
        system_message=opts["system_message"],
        model_args=_key_values(opts["model_args"], "-M"),
        generate_only=bool(opts["generate_only"]),
    )
    console = Console(stderr=True)
    rundir = run_eval(config, resume=Path(opts["resume"]) if opts["resume"] else None, console=console)
    print_summary(rundir.results(), Console(width=max(SUMMARY_WIDTH, Console().width)))
    click.echo(f"run directory: {rundir.path}")


def print_summary(results: ResultsSummary, console: Console) -> None:
    table = Table(title=f"{results.model} — {results.run_id}")
    for col in ("task / subtask", "n", "metric", "value", "± stderr", "95% CI", "not scored"):
        table.add_column(col, justify="right" if col in ("n", "value", "± stderr", "95% CI") else "left", no_wrap=col != "not scored")
    for name, task in results.tasks.items():
        for sub, res in task.subtasks.items():
            metric = res.metrics.get(task.headline)
            table.add_row(f"  {sub}", str(res.n_samples), task.headline, *metric_cells(metric), _unscored(res.status_counts))
        shown = [m for m in task.metrics if not task.subtasks or m.startswith(task.headline)]
        for metric_name in shown:
            star = " ★" if metric_name == task.headline else ""
            table.add_row(f"[bold]{name}[/bold]", str(task.n_samples), metric_name + star, *metric_cells(task.metrics[metric_name]),
                          _unscored(task.status_counts))
    console.print(table)
    methods = {m.ci_method for t in results.tasks.values() for m in _all_metrics(t) if m.ci_method}
    if "wilson" in methods:
        console.print("95% CI: Wilson score interval for proportions (macro means: at Kish's effective n)"
                      + ("; value ± 1.96 stderr otherwise" if "normal" in methods else ""))
    for name, task in results.tasks.items():
        if task.headline_aggregation:
            console.print(f"{name}: ★ {task.headline} is the {task.headline_aggregation} mean over "
                          f"{len(task.subtasks)} subtasks ({task.headline}_micro weights them by size)")


def _all_metrics(task: TaskResult) -> list[MetricValue]:
    return [*task.metrics.values(), *(m for s in task.subtasks.values() for m in s.metrics.values())]


def metric_cells(metric: MetricValue | None) -> tuple[str, str, str]:
    """value, stderr and interval columns of one metric."""
    if metric is None:
        return "—", "—", "—"
    ci = "—" if metric.ci is None else f"[{metric.ci[0]:.4f}, {metric.ci[1]:.4f}]"
    return _fmt(metric.value), _fmt(metric.stderr), ci


def _unscored(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items() if k != "scored")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


@cli.command("tasks")
def list_tasks() -> None:
    """List available tasks with their variants."""
    console = Console()
    table = Table()
    table.add_column("task")
    table.add_column("description")
    table.add_column("variants")
    for name in registry.names("task"):
        try:
            factory = registry.load("task", name)
        except UserError as exc:
            click.echo(f"warning: {exc}", err=True)
            continue
        variants = "\n".join(f"{k}: {v}" for k, v in factory.variants.items())
        params = ", ".join(f"{n}={p.default!r}" for n, p in factory.parameters().items())
        table.add_row(name, f"{factory.description}\nparameters: {params}", variants)
    console.print(table)


def _add_plugin_commands() -> None:
    for name in registry.names("command"):
        if name not in cli.commands:
            try:
                cli.add_command(registry.load("command", name), name)
            except UserError as exc:  # a broken plugin must not take the CLI down
                click.echo(f"warning: {exc}", err=True)


def main() -> None:
    try:
        _add_plugin_commands()
        cli.main(standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted: completed samples are saved; continue with `evalsuite run --resume RUN_DIR`", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
