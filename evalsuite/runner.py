"""The runner: model + tasks -> a run directory, resumable after a crash.

Samples are generated in chunks, scored, and appended to samples.jsonl as
they finish.  On ``--resume`` the completed (task, sample_id) pairs are
skipped, generated-but-unscored ones are only scored, and errored ones are
retried, so the finished run equals an uninterrupted one.

Judged tasks get the ``--judge`` handle in their context; its judgments are
logged in the run directory as they finish (evalsuite.judging).  With
``source_run`` (``evalsuite judge``) nothing is generated: the outputs of an
earlier run are scored again, e.g. by another judge.
"""

from __future__ import annotations

import json
import platform
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
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
    RequestFailure,
    require,
)
from evalsuite.backends.models import DEFAULT_MODEL, load_backend
from evalsuite.compound import run_requests, script_of
from evalsuite.backends.ray_replicas import PLACEMENT_KEYS, RayReplicas
from evalsuite.errors import ResumePoint, UserError, unknown_name
from evalsuite.judging.judge import Judge, JudgeListener, load_judge, split_judge_args
from evalsuite.progress import LiveTokens, RunProgress, status
from evalsuite.records import (
    Continuation,
    LoglikelihoodResult,
    Message,
    ModelInfo,
    RayInfo,
    ResultsSummary,
    RunLink,
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

LOCAL_RAY = "local"
NO_RESULT = "the backend returned no result for this request"
RETRYABLE = {ScoreStatus.GENERATION_ERROR, ScoreStatus.SCORING_ERROR, ScoreStatus.SANDBOX_ERROR}
# How a final judgment counts in the judging progress (a scored one is no error).
JUDGING_ERRORS = {ScoreStatus.PARSE_ERROR: "parse error", ScoreStatus.SCORING_ERROR: "judge failure"}


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
    judge: str | None = None  # model spec of the LLM judge of judged tasks
    judge_args: dict[str, str] = field(default_factory=dict)  # -J: judge decoding and backend options
    source_run: str | None = None  # judge this run's outputs instead of generating (`evalsuite judge`)
    ray: str | None = None  # a Ray cluster address; LOCAL_RAY: a private local instance
    cache: str | None = None  # response cache folder (--cache)


def run(config: RunConfig, resume: Path | None = None, console: Any = None) -> RunDir:
    """Evaluate ``config`` into a new run directory, or continue the run at ``resume``.

    The run directory is claimed for this process while it is written
    (:meth:`RunDir.claimed`).  Raises ``UserError`` for bad input, a run in use
    or one that cannot be continued as it was started, and ``Interrupted``
    (naming the command that continues) on Ctrl-C once the run directory exists."""
    with ResumePoint(_resume_command(resume) if resume is not None else None) as on_ctrl_c, ExitStack() as claims:
        return _run(config, resume, console, claims, on_ctrl_c)


def _resume_command(rundir: Path) -> str:
    return f"evalsuite run --resume {shlex.quote(str(rundir))}"


def _run(config: RunConfig, resume: Path | None, console: Any, claims: ExitStack, on_ctrl_c: ResumePoint) -> RunDir:
    if resume is not None:
        rundir = RunDir.existing(resume)
        claims.enter_context(rundir.claimed())  # before any model loads
        first = rundir.provenance()
        config = _resumed_config(first.command_config, config)
        run_id, started = first.run_id, first.started_at
        # The run keeps the command, version and commit that started it; each continuation is added.
        origin = {"command": first.command, "evalsuite_version": first.evalsuite_version, "git_sha": first.git_sha,
                  "continued": [*first.continued, Continuation(command=sys.argv, started_at=_now(),
                                                               evalsuite_version=__version__, git_sha=_git_sha())]}
    else:
        run_id, started, rundir, first = None, _now(), None, None
        origin = {"command": sys.argv, "evalsuite_version": __version__, "git_sha": _git_sha()}

    factories, params = _resolve_tasks(config)  # fail on a bad name before loading a model
    _check_judge(config, factories)
    # A value only the task can check (an unknown MT-Bench category, missing data) fails here too,
    # not after minutes of loading: a trial build, discarded (builds take well under a second).
    _build_tasks(config, factories, params, chat=True)
    source = SourceRun.open(Path(config.source_run)) if config.source_run else None
    _seed_everything(config.seed)

    options = BackendOptions(
        device=config.device,
        dtype=config.dtype,
        batch_size=int(config.batch_size) if str(config.batch_size).isdigit() else "auto",
        chat_template=config.chat_template,
        extra=dict(config.model_args),
        response_cache=config.cache,
    )
    backend = None
    if source is None:
        with status(f"loading model {config.model or DEFAULT_MODEL}", console):
            backend = _load_backend(config, options)
    try:
        model = source.provenance.model if source else backend.info
        judge = _judge_for(config, factories, options, backend, model)
        tasks = _build_tasks(config, factories, params, chat=model.chat_template, judge=judge)
        if backend is not None:
            _require_capabilities(backend, tasks)  # before anything is written or shown
        if source is not None:
            source.check(tasks, config.limit)
        _seed_everything(config.seed)  # again: the backend may have imported torch

        if rundir is None:
            run_id = _run_id(model.id, Path(config.output_dir))
            rundir = RunDir(Path(config.output_dir) / run_id)
            claims.enter_context(rundir.claimed())
        prov = RunProvenance(
            run_id=run_id,
            **origin,
            command_config=_jsonable(asdict(config)),
            model=model,
            tasks=_task_provenance(config, factories, tasks),
            seed=config.seed,
            batch_size=source.provenance.batch_size if source else backend.effective_batch_size,
            limit=config.limit,
            started_at=started,
            platform={"python": platform.python_version(), "machine": platform.machine()},
            judge=judge.info if judge else None,
            generation_run=RunLink(run_id=source.provenance.run_id, path=str(source.rundir.path.resolve())) if source else None,
            ray=_ray_info(backend),
        )
        if first is not None:
            _check_continues(first, prov)
        rundir.write_provenance(prov)
        on_ctrl_c.command = _resume_command(rundir.path)
        rundir.truncate_torn_tail()
        if judge is not None:
            judge.open_log(rundir.path)

        done = {(r.task, r.sample_id): r for r in rundir.samples()}
        progress = RunProgress(console)
        try:
            with progress:
                for name, task in tasks.items():
                    samples = limit_samples(task.samples, config.limit)
                    respond = source.responder(name) if source else _generator(task, backend)
                    _run_task(task, samples, respond, rundir, done, progress, config.generate_only,
                              request_chunk=backend.request_chunk if backend is not None else Backend.request_chunk,
                              live=_live(backend) if backend is not None else None, judge=judge,
                              generating=source is None)
        finally:
            rundir.close()
            if judge is not None:
                judge.close()
    finally:
        if backend is not None:
            backend.close()  # also stops a managed vLLM server on an error, Ctrl-C or SIGTERM

    # Replicas lost mid-run go on record.
    prov = prov.model_copy(update={"finished_at": _now(), "ray": _ray_info(backend)})
    rundir.write_provenance(prov)
    rundir.write_results(summarize(prov, tasks, rundir.compact()))
    return rundir


def _load_backend(config: RunConfig, options: BackendOptions) -> Backend:
    """The evaluated model's backend: one in this process, or replicas on Ray."""
    if config.ray is None:
        if "replicas" in config.model_args:
            raise UserError("-M replicas=N needs --ray (replicas are Ray actors)")
        return load_backend(config.model, options)
    return RayReplicas(config.model, options, address=None if config.ray == LOCAL_RAY else config.ray)


def _ray_info(backend: Backend) -> RayInfo | None:
    return backend.ray_info if isinstance(backend, RayReplicas) else None


def summarize(prov: RunProvenance, tasks: dict[str, Task], records: Sequence[SampleResult]) -> ResultsSummary:
    by_task: dict[str, list[SampleResult]] = {name: [] for name in tasks}
    for r in records:
        if r.task in by_task:
            by_task[r.task].append(r)
    # Dataset order, not completion order: concurrent backends and resumed runs
    # finish samples in another order, and float sums must not depend on it.
    for name, rs in by_task.items():
        order = {s.id: i for i, s in enumerate(tasks[name].samples)}
        rs.sort(key=lambda r: order.get(r.sample_id, len(order)))
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


# (sample, prompt as recorded, response, error) for a chunk of samples.
Responder = Callable[[list[Sample]], Iterator[tuple[Sample, Any, Response | None, str | None]]]


def _run_task(
    task: Task,
    samples: list[Sample],
    respond: Responder,
    rundir: RunDir,
    done: dict[tuple[str, str], SampleResult],
    progress: RunProgress,
    generate_only: bool,
    request_chunk: int | None,
    live: LiveTokens | None = None,
    judge: Judge | None = None,
    generating: bool = True,
) -> None:
    todo, rescore = _partition(task, samples, done, generate_only)
    progress.start_task(task.name, total=len(samples), completed=len(samples) - len(todo) - len(rescore), live=live)

    scorer = _Scorer(task, rundir, progress, generate_only, judge, generating)
    scorer.rescore(rescore)  # generated before a crash or by --generate-only

    step = request_chunk or max(1, len(todo))
    try:
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            began = time.monotonic()
            for sample, prompt, response, error in respond(chunk):
                if error is not None:
                    scorer.write_error(sample, prompt, error, began)
                else:
                    scorer.add(sample, prompt, response, began)
            scorer.flush()
    except BaseException:
        scorer.flush(unscored=True)  # generation stopped (lost backend, Ctrl-C): what came back stays
        raise
    progress.finish_task(task.name)


def _live(backend: Backend) -> LiveTokens | None:
    """The backend's running token counts for progress, where it keeps them."""
    return backend.live_tokens if backend.live_tokens() is not None else None


def _generator(task: Task, backend: Backend) -> Responder:
    """Generate with the evaluated model."""

    def respond(chunk: list[Sample]) -> Iterator[tuple[Sample, Any, Response | None, str | None]]:
        requests = [task.request(s) for s in chunk]
        prompts = {s.id: _prompt_of(r) for s, r in zip(chunk, requests)}
        for sample, response, error in _responses(backend, requests, chunk):
            yield sample, prompts[sample.id], response, error

    return respond


@dataclass
class SourceRun:
    """An earlier run whose outputs are scored again instead of generated (``evalsuite judge``)."""

    rundir: RunDir
    provenance: RunProvenance
    records: dict[tuple[str, str], SampleResult]

    @classmethod
    def open(cls, path: Path) -> "SourceRun":
        rundir = RunDir.existing(path)
        return cls(rundir, rundir.provenance(), {(r.task, r.sample_id): r for r in rundir.samples()})

    def check(self, tasks: dict[str, Task], limit: int | None) -> None:
        """The source must hold every sample, generated from the same data."""
        _check_same_data(tasks, self.provenance)
        for name, task in tasks.items():
            missing = [s.id for s in limit_samples(task.samples, limit) if (name, s.id) not in self.records]
            if missing:
                raise UserError(f"{self.rundir.path} lacks {len(missing)} {name} samples (e.g. {missing[0]}): "
                                f"finish it first with `evalsuite run --resume {self.rundir.path}`")

    def responder(self, task: str) -> Responder:
        def respond(chunk: list[Sample]) -> Iterator[tuple[Sample, Any, Response | None, str | None]]:
            for sample in chunk:
                record = self.records[(task, sample.id)]
                prompt = record.prompts if record.prompts is not None else record.prompt
                response = record.output or record.loglikelihood
                yield sample, prompt, response, None if response is not None else (record.error or "no output in the source run")

        return respond


def _check_same_data(tasks: dict[str, Task], prov: RunProvenance) -> None:
    """Rebuilt tasks must read the data the stored run read (by content hash)."""
    for name, task in tasks.items():
        if name not in prov.tasks:
            raise UserError(f"the run has no task '{name}'")
        stored = prov.tasks[name].dataset.content_hash
        if task.dataset.content_hash != stored:
            raise UserError(f"{name}: the data differs from the run's (hash {task.dataset.content_hash[:12]} != {stored[:12]})")


def _task_provenance(config: RunConfig, factories: dict[str, TaskFactory], tasks: dict[str, Task]) -> dict[str, TaskProvenance]:
    return {
        name: TaskProvenance(
            name=t.name,
            version=t.version,
            params=_effective_params(factories[name], t.params),
            dataset=t.dataset,
            template_hashes=t.template_hashes,
            generation=t.generation,
            system_message=config.system_message,
            judge_templates=t.judge_templates,
        )
        for name, t in tasks.items()
    }


def _check_continues(stored: RunProvenance, prov: RunProvenance) -> None:
    """A resumed run must evaluate what its first part did.

    The options are checked by ``_resumed_config``; this checks what they
    resolve to: the data file, the templates and the task code behind each
    task, and the weights of the model and of the judge.  Edited between a
    kill and ``--resume``, they would mix two evaluations in one samples.jsonl
    under a run.json that describes only the second.  Raises ``UserError``
    naming the first difference."""
    models = [("model", stored.model, prov.model),
              ("judge", stored.judge and stored.judge.model, prov.judge and prov.judge.model)]
    for role, then_info, now_info in models:
        if then_info is None or now_info is None:
            continue  # judged tasks without a judge are refused elsewhere
        then, now = then_info.identity(), now_info.identity()
        if then_info.chat_template_hash is not None:  # recorded by backends that apply one
            then["chat_template_hash"], now["chat_template_hash"] = then_info.chat_template_hash, now_info.chat_template_hash
        changed = [k for k in then if then[k] != now[k]]
        if changed:
            raise UserError(f"--resume: the {role} differs from the run being resumed ({changed[0]}: "
                            f"{_short(then[changed[0]])} then, {_short(now[changed[0]])} now); start a new run")
    for name, task in prov.tasks.items():
        if name not in stored.tasks:
            raise UserError(f"the run has no task '{name}'")
        then, now = stored.tasks[name].setup(), task.setup()
        for label in then:
            if then[label] != now[label]:
                raise UserError(f"--resume: {name}: {label} differs from the run being resumed "
                                f"({_short(then[label])} then, {_short(now[label])} now); start a new run")


def _short(value: Any, width: int = 60) -> str:
    text = repr(value.model_dump() if hasattr(value, "model_dump") else value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _check_judge(config: RunConfig, factories: dict[str, TaskFactory]) -> None:
    """Judged tasks need --judge before anything is loaded (generating only, they can be judged later)."""
    judged = [name for name, f in factories.items() if f.judged]
    if judged and not config.judge and not config.generate_only:
        raise UserError(f"{', '.join(judged)} {'is' if len(judged) == 1 else 'are'} graded by an LLM judge: "
                        "add --judge MODEL (any model spec, e.g. --judge smollm2-135m)")
    if config.judge_args and not config.judge:
        raise UserError("-J sets judge options, but no --judge was given")
    split_judge_args(config.judge_args)  # a bad -J fails before the evaluated model loads


def _judge_for(
    config: RunConfig, factories: dict[str, TaskFactory], options: BackendOptions, backend: Backend | None, model: ModelInfo
) -> Judge | None:
    if not config.judge or not any(f.judged for f in factories.values()):
        return None  # a --judge without judged tasks loads nothing
    return load_judge(config.judge, config.judge_args, options, evaluated=backend, evaluated_spec=config.model,
                      evaluated_info=model)


def _require_capabilities(backend: Backend, tasks: dict[str, Task]) -> None:
    for task in tasks.values():
        kinds = {type(task.request(s)) for s in task.samples[:1]}
        if ChoiceRequest in kinds:
            require(backend, LOGLIKELIHOOD)
        if kinds - {ChoiceRequest}:
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
    gen = [i for i, r in enumerate(reqs) if not isinstance(r, ChoiceRequest)]
    mc = [i for i, r in enumerate(reqs) if isinstance(r, ChoiceRequest)]
    generate = lambda batch: run_requests(backend, batch)  # noqa: E731 - plain and compound requests
    for method, idx in ((generate, gen), (backend.loglikelihood, mc)):
        if not idx:
            continue
        seen: set[int] = set()
        try:
            for j, response in method([reqs[i] for i in idx]):
                seen.add(idx[j])
                yield _as_outcome(samples[idx[j]], response)
        except UserError:
            raise
        except Exception:
            for i in idx:
                if i in seen:
                    continue
                seen.add(i)
                try:
                    answers = list(method([reqs[i]]))
                except UserError:
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded per sample, never dropped
                    yield samples[i], None, f"{type(exc).__name__}: {exc}"
                    continue
                yield _as_outcome(samples[i], answers[0][1]) if answers else (samples[i], None, NO_RESULT)
        # A generator that ended without answering some request (a plugin's bug,
        # a lost reply): their samples must not vanish from the run.
        for i in idx:
            if i not in seen:
                yield samples[i], None, NO_RESULT


def _as_outcome(sample: Sample, response: Any) -> tuple[Sample, Response | None, str | None]:
    """(sample, response, None), or (sample, None, reason) for a request that alone failed for good."""
    if isinstance(response, RequestFailure):
        return sample, None, response.reason
    return sample, response, None


class _Scorer:
    """Buffers generated samples, scores them in the task's chunk size, writes records.

    When a task scores in batches (a sandbox, an LLM judge: minutes per batch),
    each generation is also written at once with status ``generated``, so an
    interruption while a batch is scored loses nothing (``--resume`` scores it);
    the scored record written later supersedes it (the latest record wins).
    """

    def __init__(self, task: Task, rundir: RunDir, progress: RunProgress, generate_only: bool,
                 judge: Judge | None = None, generating: bool = True) -> None:
        self.task, self.rundir, self.progress, self.generate_only = task, rundir, progress, generate_only
        self.generating = generating  # False: outputs come from an earlier run (`evalsuite judge`)
        self.judging = _JudgingProgress(progress, task.name, judge) if judge is not None else None
        self.write_ahead = not generate_only and task.score_chunk > 1
        # (sample, prompt, response, started, already on disk as generated)
        self.pending: list[tuple[Sample, Any, Response, float, bool]] = []

    def add(self, sample: Sample, prompt: Any, response: Response, started: float, stored: bool = False) -> None:
        # Work of this session only: stored outputs read back would fake a rate and an ETA.
        reused = stored or not self.generating
        tokens = 0 if reused else getattr(response, "completion_tokens", 0)
        if self.write_ahead and not stored:
            self.rundir.append([self._record(sample, prompt, response, Score(status=ScoreStatus.GENERATED), started)])
            stored = True
        self.pending.append((sample, prompt, response, started, stored))
        self.progress.advance(self.task.name, tokens=tokens, reused=reused)
        if self.generate_only or len(self.pending) >= self.task.score_chunk:
            self.flush()  # nothing to batch when only generating: write at once

    def rescore(self, records: list[tuple[Sample, SampleResult]]) -> None:
        """Score stored generations without generating again."""
        for sample, prev in records:
            self.add(sample, prev.prompt, prev.output or prev.loglikelihood, time.monotonic(), stored=True)
        self.flush()

    def flush(self, unscored: bool = False) -> None:
        """Score and write the buffered generations; ``unscored`` writes them as
        ``generated`` (generation stopped: ``--resume`` scores them)."""
        if not self.pending:
            return
        batch = self.pending
        if self.generate_only or unscored:
            batch = [entry for entry in batch if not entry[4]]
            scores = [Score(status=ScoreStatus.GENERATED)] * len(batch)
        else:
            try:  # an interruption in here leaves the batch pending, for flush(unscored=True)
                with self.judging.reporting() if self.judging is not None else nullcontext():
                    scores = list(self.task.score([(s, r) for s, _, r, _, _ in batch]))
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the generations, mark them
                scores = [Score(status=ScoreStatus.SCORING_ERROR, detail=f"{type(exc).__name__}: {exc}")] * len(batch)
        self.pending = []
        failed = sum(s.status not in (ScoreStatus.SCORED, ScoreStatus.GENERATED) for s in scores)
        if failed:
            self.progress.add_errors(self.task.name, failed)
        self.rundir.append(
            self._record(sample, prompt, response, score, started)
            for (sample, prompt, response, started, _), score in zip(batch, scores)
        )

    def write_error(self, sample: Sample, prompt: Any, error: str, started: float) -> None:
        self.progress.advance(self.task.name, error=True)
        score = Score(status=ScoreStatus.GENERATION_ERROR, detail=error)
        self.rundir.append([self._record(sample, prompt, None, score, started, error=error)])

    def _record(
        self, sample: Sample, prompt: Any, response: Response | None, score: Score, started: float, error: str | None = None
    ) -> SampleResult:
        is_loglik = isinstance(response, LoglikelihoodResult)
        # A multi-request sent several prompts: a list of prompts, not of messages.
        multi = isinstance(prompt, list) and bool(prompt) and not isinstance(prompt[0], Message)
        return SampleResult(
            task=self.task.name,
            sample_id=sample.id,
            subtask=sample.subtask,
            prompt=None if multi else prompt,
            prompts=prompt if multi else None,
            prompt_hash=sha256_text(json.dumps(_jsonable(prompt), ensure_ascii=False)),
            target=sample.target,
            output=None if is_loglik else response,
            loglikelihood=response if is_loglik else None,
            score=score,
            error=error,
            duration_s=round(time.monotonic() - started, 4),
        )


class _JudgingProgress(JudgeListener):
    """One task's judging as its own progress entry (``mtbench judging``), opened at its first judgment."""

    def __init__(self, progress: RunProgress, task: str, judge: Judge) -> None:
        self.progress, self.task, self.judge = progress, task, judge
        self.entry = ""

    def reporting(self) -> AbstractContextManager[None]:
        """The judge reports here inside this block."""
        return self.judge.reporting_to(self)

    def requested(self, judgments: int, reused: int) -> None:
        if not self.entry:
            self.entry = self.progress.start_phase(self.task, "judging", "judgments", tuple(JUDGING_ERRORS.values()),
                                                   step_unit="replies", live=_live(self.judge.backend))
        self.progress.add_work(self.entry, judgments, done=reused)

    def expect_replies(self, n: int) -> None:
        self.progress.add_steps(self.entry, n)

    def replied(self, completion_tokens: int) -> None:
        self.progress.step(self.entry, tokens=completion_tokens)

    def judged(self, status: ScoreStatus) -> None:
        self.progress.advance(self.entry, error=JUDGING_ERRORS.get(status, False))


def _prompt_of(request: Any) -> Any:
    return request.context if isinstance(request, ChoiceRequest) else script_of(request)


def _resolve_tasks(config: RunConfig) -> tuple[dict[str, TaskFactory], dict[str, dict[str, str]]]:
    factories = {name: registry.load("task", name) for name in config.tasks}
    return factories, _split_params(config, factories)


def _build_tasks(
    config: RunConfig, factories: dict[str, TaskFactory], params: dict[str, dict[str, str]], chat: bool,
    judge: Judge | None = None,
) -> dict[str, Task]:
    ctx = TaskContext(
        data_dir=Path(config.data_dir) if config.data_dir else None,
        seed=config.seed,
        chat=chat,
        system_message=config.system_message,
        judge=judge,
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
    # Where replicas run may change (fewer GPUs after a crash); what they compute may not.
    placement = {k: v for k, v in given.model_args.items() if k in PLACEMENT_KEYS}
    given = replace(given, model_args={k: v for k, v in given.model_args.items() if k not in PLACEMENT_KEYS})
    stored_args = {k: v for k, v in base.model_args.items() if k not in PLACEMENT_KEYS}
    # Options given again on the command line must agree with the stored run.
    default = RunConfig()
    for name in RunConfig.__dataclass_fields__:
        mine = getattr(given, name)
        theirs = stored_args if name == "model_args" else getattr(base, name)
        if mine != getattr(default, name) and mine != theirs and name not in ("output_dir", "ray", "data_dir"):
            raise UserError(f"--resume: option {name}={mine!r} differs from the run being resumed ({theirs!r})")
    # Where the data lives may change too (a moved folder); its content may not (_check_continues).
    return replace(base, ray=given.ray or base.ray, data_dir=given.data_dir or base.data_dir,
                   model_args={**base.model_args, **placement})


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
    run.json and must read the same data (checked by content hash).  Raises
    UserError for bad input or when another process is writing the run, and
    Interrupted on Ctrl-C."""
    with ResumePoint(f"evalsuite score --run {shlex.quote(str(path))}"):
        rundir = RunDir.existing(path)
        with rundir.claimed():
            return _score_run(rundir, data_dir, console)


def _score_run(rundir: RunDir, data_dir: str | None, console: Any) -> RunDir:
    path = rundir.path
    prov = rundir.provenance()
    config = _resumed_config(prov.command_config, RunConfig())
    if data_dir is not None:
        config = replace(config, data_dir=data_dir)
    factories, params = _resolve_tasks(config)
    if any(f.judged for f in factories.values()) and not config.judge:
        raise UserError(f"{path} holds judged tasks generated without a judge: judge them with "
                        f"`evalsuite judge --run {path} --judge MODEL`")
    options = BackendOptions(device=config.device, dtype=config.dtype)
    judge = _judge_for(config, factories, options, None, prov.model)
    tasks = _build_tasks(config, factories, params, chat=prov.model.chat_template, judge=judge)
    _check_same_data(tasks, prov)
    if judge is not None:
        rundir.write_provenance(prov.model_copy(update={"judge": judge.info}))
        judge.open_log(rundir.path)
    rundir.truncate_torn_tail()
    done = {(r.task, r.sample_id): r for r in rundir.samples()}
    progress = RunProgress(console)
    try:
        with progress:
            for name, task in tasks.items():
                _, rescore = _partition(task, limit_samples(task.samples, config.limit), done, generate_only=False)
                progress.start_task(name, total=len(rescore), completed=0)
                _Scorer(task, rundir, progress, generate_only=False, judge=judge).rescore(rescore)
                progress.finish_task(name)
    finally:
        rundir.close()
        if judge is not None:
            judge.close()
    rundir.write_results(summarize(prov, tasks, rundir.compact()))
    return rundir
