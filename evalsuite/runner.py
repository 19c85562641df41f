"""The runner: model + tasks -> a run directory, resumable after a crash.

Samples are generated in chunks, scored, and appended to samples.jsonl as
they finish.  On ``--resume`` the completed (task, sample_id) pairs are
skipped, generated-but-unscored ones are only scored, and errored ones are
retried, so the finished run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import platform
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalsuite import __version__, registry
from evalsuite.backends.base import (
    GENERATE,
    LOGLIKELIHOOD,
    Backend,
    BackendOptions,
    ChoiceRequest,
    GenerateRequest,
    require,
)
from evalsuite.backends.models import DEFAULT_MODEL, load_backend
from evalsuite.errors import UserError, unknown_name
from evalsuite.progress import RunProgress, status
from evalsuite.records import (
    LoglikelihoodResult,
    ResultsSummary,
    RunProvenance,
    Sample,
    SampleResult,
    Score,
    ScoreStatus,
    TaskProvenance,
)
from evalsuite.rundir import RunDir
from evalsuite.task import Response, Task, TaskContext, TaskFactory
from evalsuite.templates import sha256_text

CHUNK = 256  # requests handed to the backend at once (length-sorted inside)
RETRYABLE = {ScoreStatus.GENERATION_ERROR, ScoreStatus.SCORING_ERROR, ScoreStatus.SANDBOX_ERROR}


@dataclass(frozen=True)
class RunConfig:
    model: str | None = None
    tasks: tuple[str, ...] = ("bbh",)
    task_params: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> {key: value}
    global_params: dict[str, str] = field(default_factory=dict)  # applied to every task that takes them
    limit: int | None = None  # per subtask (or per task without subtasks)
    output_dir: str = "runs"
    batch_size: int | str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 1234
    data_dir: str | None = None
    chat_template: bool | None = None
    system_message: str | None = None
    model_args: dict[str, str] = field(default_factory=dict)
    generate_only: bool = False


def run(config: RunConfig, resume: Path | None = None, console: Any = None) -> RunDir:
    if resume is not None:
        rundir = RunDir.existing(resume)
        prov = rundir.provenance()
        config = _resumed_config(prov.command_config, config)
        run_id, started = prov.run_id, prov.started_at
    else:
        run_id, started, rundir = None, _now(), None

    factories, params = _resolve_tasks(config)  # fail on a bad name before loading a model
    _seed_everything(config.seed)

    with status(f"loading model {config.model or DEFAULT_MODEL}", console):
        backend = load_backend(
            config.model,
            BackendOptions(
                device=config.device,
                dtype=config.dtype,
                batch_size=int(config.batch_size) if str(config.batch_size).isdigit() else "auto",
                chat_template=config.chat_template,
                extra=dict(config.model_args),
            ),
        )
    tasks = _build_tasks(config, factories, params, chat=backend.info.chat_template)
    _require_capabilities(backend, tasks)  # before anything is written or shown
    _seed_everything(config.seed)  # again: the backend may have imported torch

    if rundir is None:
        run_id = _run_id(backend.info.id, Path(config.output_dir))
        rundir = RunDir(Path(config.output_dir) / run_id)
    prov = RunProvenance(
        run_id=run_id,
        evalsuite_version=__version__,
        git_sha=_git_sha(),
        command=sys.argv,
        command_config=_jsonable(asdict(config)),
        model=backend.info,
        tasks={
            name: TaskProvenance(
                name=t.name,
                version=t.version,
                params=_effective_params(factories[name], t.params),
                dataset=t.dataset,
                template_hashes=t.template_hashes,
                generation=t.generation,
                system_message=config.system_message,
            )
            for name, t in tasks.items()
        },
        seed=config.seed,
        batch_size=backend.effective_batch_size,
        limit=config.limit,
        started_at=started,
        platform={"python": platform.python_version(), "machine": platform.machine()},
    )
    rundir.write_provenance(prov)
    rundir.truncate_torn_tail()

    done = {(r.task, r.sample_id): r for r in rundir.samples()}
    progress = RunProgress(console)
    with progress:
        for name, task in tasks.items():
            samples = limit_samples(task.samples, config.limit)
            _run_task(task, samples, backend, rundir, done, progress, config.generate_only)
    rundir.close()
    backend.close()

    prov = prov.model_copy(update={"finished_at": _now()})
    rundir.write_provenance(prov)
    rundir.write_results(summarize(prov, tasks, rundir.samples()))
    return rundir


def summarize(prov: RunProvenance, tasks: dict[str, Task], records: Sequence[SampleResult]) -> ResultsSummary:
    by_task: dict[str, list[SampleResult]] = {name: [] for name in tasks}
    for r in records:
        if r.task in by_task:
            by_task[r.task].append(r)
    return ResultsSummary(
        run_id=prov.run_id,
        model=prov.model.id,
        tasks={name: tasks[name].aggregate(rs) for name, rs in by_task.items()},
    )


def limit_samples(samples: Sequence[Sample], limit: int | None) -> list[Sample]:
    """The first ``limit`` samples of every subtask, in dataset order."""
    if limit is None:
        return list(samples)
    seen: dict[str | None, int] = {}
    kept = []
    for s in samples:
        if seen.get(s.subtask, 0) < limit:
            seen[s.subtask] = seen.get(s.subtask, 0) + 1
            kept.append(s)
    return kept


def _run_task(
    task: Task,
    samples: list[Sample],
    backend: Backend,
    rundir: RunDir,
    done: dict[tuple[str, str], SampleResult],
    progress: RunProgress,
    generate_only: bool,
) -> None:
    todo, rescore = _partition(task, samples, done, generate_only)
    progress.start_task(task.name, total=len(samples), completed=len(samples) - len(todo) - len(rescore))

    scorer = _Scorer(task, rundir, progress, generate_only)
    scorer.rescore(rescore)  # generated before a crash or by --generate-only

    requests = {s.id: task.request(s) for s in todo}
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        began = time.monotonic()
        for sample, response, error in _responses(backend, [requests[s.id] for s in chunk], chunk):
            prompt = _prompt_of(requests[sample.id])
            if error is not None:
                scorer.write_error(sample, prompt, error, began)
            else:
                scorer.add(sample, prompt, response, began)
        scorer.flush()
    progress.finish_task(task.name)


def _require_capabilities(backend: Backend, tasks: dict[str, Task]) -> None:
    for task in tasks.values():
        kinds = {type(task.request(s)) for s in task.samples[:1]}
        if ChoiceRequest in kinds:
            require(backend, LOGLIKELIHOOD)
        if GenerateRequest in kinds:
            require(backend, GENERATE)


def _partition(
    task: Task, samples: list[Sample], done: dict[tuple[str, str], SampleResult], generate_only: bool
) -> tuple[list[Sample], list[tuple[Sample, SampleResult]]]:
    """Samples still to generate, and generated ones still to score."""
    todo, rescore = [], []
    for s in samples:
        prev = done.get((task.name, s.id))
        response = prev and (prev.output or prev.loglikelihood)
        if prev is None or (prev.score.status in RETRYABLE and response is None):
            todo.append(s)
        elif prev.score.status in RETRYABLE | {ScoreStatus.GENERATED} and not generate_only:
            rescore.append((s, prev))
    return todo, rescore


def _responses(backend: Backend, reqs: list[Any], samples: list[Sample]) -> Iterator[tuple[Sample, Response | None, str | None]]:
    """Responses for a chunk; if the batch call fails, retry one by one so
    the failure is pinned on the samples that cause it."""
    gen = [i for i, r in enumerate(reqs) if isinstance(r, GenerateRequest)]
    mc = [i for i, r in enumerate(reqs) if isinstance(r, ChoiceRequest)]
    for method, idx in ((backend.generate, gen), (backend.loglikelihood, mc)):
        if not idx:
            continue
        seen: set[int] = set()
        try:
            for j, response in method([reqs[i] for i in idx]):
                seen.add(idx[j])
                yield samples[idx[j]], response, None
        except UserError:
            raise
        except Exception:
            for i in idx:
                if i in seen:
                    continue
                try:
                    (_, response), = list(method([reqs[i]]))
                    yield samples[i], response, None
                except UserError:
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded per sample, never dropped
                    yield samples[i], None, f"{type(exc).__name__}: {exc}"


class _Scorer:
    """Buffers generated samples, scores them in the task's chunk size, writes records."""

    def __init__(self, task: Task, rundir: RunDir, progress: RunProgress, generate_only: bool) -> None:
        self.task, self.rundir, self.progress, self.generate_only = task, rundir, progress, generate_only
        self.pending: list[tuple[Sample, Any, Response, float]] = []

    def add(self, sample: Sample, prompt: Any, response: Response, started: float) -> None:
        self.pending.append((sample, prompt, response, started))
        tokens = getattr(response, "completion_tokens", 0)
        self.progress.advance(self.task.name, tokens=tokens)
        if len(self.pending) >= self.task.score_chunk:
            self.flush()

    def rescore(self, records: list[tuple[Sample, SampleResult]]) -> None:
        """Score stored generations without generating again."""
        for sample, prev in records:
            self.add(sample, prev.prompt, prev.output or prev.loglikelihood, time.monotonic())
        self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        if self.generate_only:
            scores = [Score(status=ScoreStatus.GENERATED)] * len(batch)
        else:
            try:
                scores = list(self.task.score([(s, r) for s, _, r, _ in batch]))
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the generations, mark them
                scores = [Score(status=ScoreStatus.SCORING_ERROR, detail=f"{type(exc).__name__}: {exc}")] * len(batch)
        failed = sum(s.status not in (ScoreStatus.SCORED, ScoreStatus.GENERATED) for s in scores)
        if failed:
            self.progress.add_errors(self.task.name, failed)
        self.rundir.append(
            self._record(sample, prompt, response, score, started)
            for (sample, prompt, response, started), score in zip(batch, scores)
        )

    def write_error(self, sample: Sample, prompt: Any, error: str, started: float) -> None:
        self.progress.advance(self.task.name, error=True)
        score = Score(status=ScoreStatus.GENERATION_ERROR, detail=error)
        self.rundir.append([self._record(sample, prompt, None, score, started, error=error)])

    def _record(
        self, sample: Sample, prompt: Any, response: Response | None, score: Score, started: float, error: str | None = None
    ) -> SampleResult:
        is_loglik = isinstance(response, LoglikelihoodResult)
        return SampleResult(
            task=self.task.name,
            sample_id=sample.id,
            subtask=sample.subtask,
            prompt=prompt,
            prompt_hash=sha256_text(json.dumps(_jsonable(prompt), ensure_ascii=False)),
            target=sample.target,
            output=None if is_loglik else response,
            loglikelihood=response if is_loglik else None,
            score=score,
            error=error,
            duration_s=round(time.monotonic() - started, 4),
        )


def _prompt_of(request: Any) -> Any:
    return request.prompt if isinstance(request, GenerateRequest) else request.context


def _resolve_tasks(config: RunConfig) -> tuple[dict[str, TaskFactory], dict[str, dict[str, str]]]:
    factories = {name: registry.load("task", name) for name in config.tasks}
    return factories, _split_params(config, factories)


def _build_tasks(
    config: RunConfig, factories: dict[str, TaskFactory], params: dict[str, dict[str, str]], chat: bool
) -> dict[str, Task]:
    ctx = TaskContext(
        data_dir=Path(config.data_dir) if config.data_dir else None,
        seed=config.seed,
        chat=chat,
        system_message=config.system_message,
    )
    return {name: factories[name](ctx, **params[name]) for name in config.tasks}


def _split_params(config: RunConfig, factories: dict[str, TaskFactory]) -> dict[str, dict[str, str]]:
    params: dict[str, dict[str, str]] = {name: {} for name in factories}
    for key, value in config.global_params.items():
        takers = [n for n, f in factories.items() if key in f.parameters()]
        if not takers:
            known = {p for f in factories.values() for p in f.parameters()}
            raise unknown_name("task parameter", key, known)
        for n in takers:
            params[n][key] = value
    for name, kv in config.task_params.items():
        if name not in factories:
            raise UserError(f"-T {name}.…: task '{name}' is not in --tasks ({', '.join(factories)})")
        params[name].update(kv)
    for name, factory in factories.items():
        factory.coerce(params[name])  # fail on a bad name or value before loading a model
    return params


def _effective_params(factory: TaskFactory, given: dict[str, Any]) -> dict[str, Any]:
    defaults = {n: p.default for n, p in factory.parameters().items() if p.default is not p.empty}
    return _jsonable({**defaults, **given})


def _resumed_config(stored: dict[str, Any], given: RunConfig) -> RunConfig:
    base = RunConfig(
        **{k: tuple(v) if k == "tasks" else v for k, v in stored.items() if k in RunConfig.__dataclass_fields__}
    )
    # Options given again on the command line must agree with the stored run.
    default = RunConfig()
    for name in RunConfig.__dataclass_fields__:
        mine, theirs = getattr(given, name), getattr(base, name)
        if mine != getattr(default, name) and mine != theirs and name != "output_dir":
            raise UserError(f"--resume: option {name}={mine!r} differs from the run being resumed ({theirs!r})")
    return replace(base)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def _run_id(model_id: str, out: Path) -> str:
    slug = "".join(c if c.isalnum() or c in "-._" else "-" for c in model_id.split("/")[-1]).strip("-")
    base = f"{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{slug}"
    run_id, n = base, 1
    while (out / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def _git_sha() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.model_dump() if hasattr(o, "model_dump") else str(o)))


def score_run(path: Path, data_dir: str | None = None, console: Any = None) -> RunDir:
    """Score a run's generated-but-unscored records (and retry sandbox/scoring
    errors) without loading its model: ``evalsuite score --run RUN_DIR``.

    Uses the same scoring path as ``--resume``; the tasks are rebuilt from
    run.json and must read the same data (checked by content hash)."""
    rundir = RunDir.existing(path)
    prov = rundir.provenance()
    config = _resumed_config(prov.command_config, RunConfig())
    if data_dir is not None:
        config = replace(config, data_dir=data_dir)
    factories, params = _resolve_tasks(config)
    tasks = _build_tasks(config, factories, params, chat=prov.model.chat_template)
    for name, task in tasks.items():
        stored = prov.tasks[name].dataset.content_hash
        if task.dataset.content_hash != stored:
            raise UserError(f"{name}: the data differs from the run's (hash {task.dataset.content_hash[:12]} != {stored[:12]})")
    rundir.truncate_torn_tail()
    done = {(r.task, r.sample_id): r for r in rundir.samples()}
    progress = RunProgress(console)
    with progress:
        for name, task in tasks.items():
            _, rescore = _partition(task, limit_samples(task.samples, config.limit), done, generate_only=False)
            progress.start_task(name, total=len(rescore), completed=0)
            _Scorer(task, rundir, progress, generate_only=False).rescore(rescore)
            progress.finish_task(name)
    rundir.close()
    rundir.write_results(summarize(prov, tasks, rundir.samples()))
    return rundir
