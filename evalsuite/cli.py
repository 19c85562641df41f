"""The ``evalsuite`` command line."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from evalsuite import __version__, registry
from evalsuite.errors import Interrupted, UserError, key_values
from evalsuite.records import JudgingSummary, MetricValue, ResultsSummary, TaskResult

# Offline by default unless the user says otherwise: transformers otherwise
# retries the hub for ~25 s before falling back to local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SUMMARY_WIDTH = 130  # columns of the summary table when stdout is not a terminal (fits BBH's subtask names)


def _use_sandbox_hosts(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        from evalsuite.sandbox import HOSTS_ENV

        registry.load("sandbox", "docker").check_hosts(value)  # a bad list fails before any work
        os.environ[HOSTS_ENV] = value  # read by the sandbox wherever a task opens one


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")  # what backends accept (torch.device forms; mps where torch has it)


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--device is checked before any task data or model loads (torch would fail only after the load)."""
    if not DEVICE.fullmatch(value):
        raise UserError(f"--device '{value}' is not a device: use auto, cpu, cuda or cuda:N")
    return value


sandbox_hosts_option = click.option(
    "--sandbox-hosts", callback=_use_sandbox_hosts, expose_value=False, metavar="URL[#workers=N],...",
    help="Docker engines that run model-written code: unix://, ssh://USER@HOST, tcp://HOST:2376#tls=CERT_DIR, "
         "each with #workers=N (default 2 x its CPUs). A host that fails mid-run is drained; its jobs run elsewhere.",
)


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
@click.option("--device", default="auto", show_default=True, callback=_check_device, help="auto, cpu, cuda or cuda:N.")
@click.option("--dtype", default="auto", show_default=True, help="auto, float32, bfloat16 or float16.")
@click.option("--seed", type=int, default=1234, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Local mirror of benchmark files (else $EVALSUITE_DATA_DIR, else the HF hub).")
@click.option("--chat-template/--no-chat-template", default=None, help="Apply the model's chat template (default: when it has one).")
@click.option("--system-message", default=None, help="Run-level system message (recorded in provenance).")
@click.option("--cache", type=click.Path(file_okay=False), default=None, envvar="EVALSUITE_RESPONSE_CACHE", help="Response cache folder: identical deterministic requests are answered from it [env: EVALSUITE_RESPONSE_CACHE].")
@click.option("--generate-only", is_flag=True, help="Stop after generation; score later with `evalsuite score` or `evalsuite judge`.")
@click.option("--judge", default=None, metavar="MODEL", help="LLM judge of judged tasks (mtbench, tinystories...): any model spec, as --model.")
@click.option("--judge-arg", "-J", "judge_args", multiple=True, metavar="KEY=VALUE", help="Judge option: max_new_tokens, temperature, top_p, seed (default: temperature 0, 2048 tokens), retries, batch_size, or a judge backend option as -M.")
@click.option("--ray", "ray", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Data parallelism over Ray: -M replicas=N actors, each with its own replica of the model. "
                   "ADDRESS joins a cluster (auto, HOST:PORT, ray://HOST:10001); without it a private local instance "
                   "is started and stopped. Needs pip install 'evalsuite[ray]'.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False), default=None, help="Continue an interrupted run directory.")
@sandbox_hosts_option
def run(**opts: object) -> None:
    """Evaluate a model on tasks and write DIR/<run-id>/{run.json,samples.jsonl,results.json}."""
    from evalsuite.runner import RunConfig, run as run_eval

    if not str(opts["batch_size"]).isdigit() and opts["batch_size"] != "auto":
        raise UserError(f"--batch-size must be a positive integer or 'auto', got '{opts['batch_size']}'")
    global_params, task_params = {}, {}
    for key, value in key_values(opts["task_params"], "-T").items():
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
        model_args=key_values(opts["model_args"], "-M"),
        generate_only=bool(opts["generate_only"]),
        ray=opts["ray"],
        cache=opts["cache"],
        judge=opts["judge"],
        judge_args=key_values(opts["judge_args"], "-J"),
    )
    console = Console(stderr=True)
    rundir = run_eval(config, resume=Path(opts["resume"]) if opts["resume"] else None, console=console)
    print_summary(rundir.results(), Console(width=max(SUMMARY_WIDTH, Console().width)))
    click.echo(f"run directory: {rundir.path}")


def print_summary(results: ResultsSummary, console: Console) -> None:
    table = Table(title=Text(f"{results.model} — {results.run_id}", style="table.title"))
    for col in ("task / subtask", "n", "metric", "value", "± stderr", "95% CI", "not scored"):
        table.add_column(col, justify="right" if col in ("n", "value", "± stderr", "95% CI") else "left", no_wrap=col != "not scored")
    for name, task in results.tasks.items():
        for sub, res in task.subtasks.items():
            metric = res.metrics.get(task.headline)
            table.add_row(f"  {sub}", str(res.n_samples), task.headline, *metric_cells(metric), _unscored(res.status_counts))
        # With subtasks: the headline family and metrics without a per-subtask mean
        # (BBH's answer_found_macro/_micro stay out; MT-Bench's turn_1/turn_2 show).
        shown = [m for m in task.metrics if not task.subtasks or m.startswith(task.headline)
                 or not (m.endswith(("_macro", "_micro")) or f"{m}_macro" in task.metrics)]
        for metric_name in shown:
            star = " ★" if metric_name == task.headline else ""
            table.add_row(f"[bold]{name}[/bold]", str(task.n_samples), metric_name + star, *metric_cells(task.metrics[metric_name]),
                          _unscored(task.status_counts))
        if not shown:  # nothing scored (e.g. every judge reply without a verdict): still one row
            table.add_row(f"[bold]{name}[/bold]", str(task.n_samples), task.headline + " ★", *metric_cells(None),
                          _unscored(task.status_counts))
    console.print(table)
    methods = {m.ci_method for t in results.tasks.values() for m in _all_metrics(t) if m.ci_method}
    if "wilson" in methods:
        console.print("95% CI: Wilson score interval for proportions (macro means: at Kish's effective n)"
                      + ("; value ± 1.96 stderr otherwise" if "normal" in methods else ""))
    for name, task in results.tasks.items():
        for warning in task.warnings:
            console.print(Text(f"{name}: {warning}"))  # as written: a warning may quote a model's text
        if task.headline_aggregation:
            counted = sum(task.headline in sub.metrics for sub in task.subtasks.values())
            over = f"{counted} of {len(task.subtasks)}" if counted < len(task.subtasks) else str(len(task.subtasks))
            console.print(f"{name}: ★ {task.headline} is the {task.headline_aggregation} mean over "
                          f"{over} subtasks ({task.headline}_micro weights them by size)")
        if task.judging is not None:
            console.print(f"{name}: " + judging_line(task.judging), markup=False, highlight=False)


def judging_line(j: JudgingSummary) -> str:
    """One line on how a task's judge behaved (parse errors, biases, outcome)."""
    who = f"judge {j.judge}" + (" [self-judging]" if j.self_judging else "") if j.judge else "the model is the judge"
    parts = [who, f"{j.judgments} judgments, parse errors {j.parse_errors} ({_share(j.parse_error_rate)})"]
    if j.quoted_verdicts:
        parts.append(f"{j.quoted_verdicts} quoted verdicts set aside")
    if j.retried:
        parts.append(f"{j.retried} retried")
    if j.length_correlation is not None:
        c = j.length_correlation
        rho = "undefined" if c.rho is None else f"{c.rho:+.2f}"
        parts.append(f"length-grade Spearman ρ {rho} (n={c.n})")
    if j.position_consistency is not None or j.first_position_win_share is not None:
        parts.append(f"position consistency {_share(j.position_consistency)}, first-position wins "
                     f"{_share(j.first_position_win_share)}, ties {_share(j.tie_rate)}")
    if j.outcome is not None:
        o = j.outcome
        ci = f" [{o.ci_low:.3f}, {o.ci_high:.3f}]" if o.ci_low is not None else ""
        parts.append(f"win rate vs {o.opponent} {o.win_rate:.3f}{ci}: {o.wins} won, {o.losses} lost, "
                     f"{o.ties} tied ({o.inconsistent} inconsistent)")
    return " · ".join(parts)


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


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
        judged = "\ngraded by an LLM judge: needs --judge MODEL" if factory.judged else ""
        table.add_row(name, f"{factory.description}\nparameters: {params}{judged}", variants)
    console.print(table)


def _add_plugin_commands() -> None:
    for name in registry.names("command"):
        if name not in cli.commands:
            try:
                cli.add_command(registry.load("command", name), name)
            except UserError as exc:  # a broken plugin must not take the CLI down
                click.echo(f"warning: {exc}", err=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds like Ctrl-C: finally blocks stop managed servers, and
    # the samples written so far stay for --resume.
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _add_plugin_commands()
        cli.main(standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # Click turns Ctrl-C into Abort, the KeyboardInterrupt as its cause.
        cause = exc if isinstance(exc, KeyboardInterrupt) else exc.__cause__
        if isinstance(cause, Interrupted):
            click.echo(f"interrupted: all finished work is saved; continue with `{cause.resume}`", err=True)
        else:
            click.echo("interrupted" if isinstance(cause, KeyboardInterrupt) else "aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
