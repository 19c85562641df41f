"""Gather run directories into the leaderboard's table: models × tasks.

A row is one model checkpoint (model id plus revision). When several runs
cover the same model and task, the run that started last wins, so re-running
one task for a model updates that cell only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from evalsuite.errors import UserError
from evalsuite.records import ModelInfo, ResultsSummary, RunProvenance, TaskResult
from evalsuite.rundir import RunDir

from leaderboards.config import SiteConfig
from leaderboards.ratings import Matchup

# 95% two-sided normal quantile; the site shows score ± Z95 × stderr.
Z95 = 1.959963984540054


def slugify(text: str) -> str:
    """A file-name-safe, collision-free slug (readable prefix + short hash)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60] or "x"
    return f"{readable}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


@dataclass
class Run:
    rundir: RunDir
    provenance: RunProvenance
    results: ResultsSummary
    slug: str

    @property
    def run_id(self) -> str:
        return self.provenance.run_id


@dataclass(frozen=True)
class Score:
    """A displayed number, already scaled (e.g. to percentage points), with its 95 % interval.

    The interval comes from the run's records (Wilson's for a proportion, so
    0 of 10 shows [0, 27.8] points, not ± 0); runs written before records
    carried intervals get value ± 1.96 stderr.  ``n`` is set for a Wilson
    interval: the trials behind it, which an average of such scores needs.
    """

    value: float
    stderr: float | None
    low: float | None = None
    high: float | None = None
    n: float | None = None
    scale: float = 1.0

    @classmethod
    def normal(cls, value: float, stderr: float | None, scale: float = 1.0) -> "Score":
        if stderr is None:
            return cls(value, None, scale=scale)
        return cls(value, stderr, value - Z95 * stderr, value + Z95 * stderr, scale=scale)

    @property
    def bounds(self) -> tuple[float, float] | None:
        return None if self.low is None or self.high is None else (self.low, self.high)


@dataclass
class Cell:
    """One model's result on one task."""

    task: str
    run: Run
    result: TaskResult
    metric: str  # the headline metric key shown
    score: Score | None  # None: the run lacks that metric
    subtasks: dict[str, Score | None]

    @property
    def setup(self) -> dict[str, object]:
        """What must match for two scores in one column to be comparable."""
        tp = self.run.provenance.tasks.get(self.task)
        if tp is None:
            return {}
        judged = self.judge is not None and self.run.provenance.judge is not None
        judge = self.run.provenance.judge
        return {
            "version": tp.version,
            **{f"param {k}": v for k, v in tp.params.items()},
            "templates": tp.template_hashes,
            "dataset": tp.dataset.content_hash,
            "generation": tp.generation.model_dump() if tp.generation else None,
            "system message": tp.system_message,
            # --limit N keeps N items per subtask: a smoke run is not the benchmark.
            "limit": self.run.provenance.limit,
            # A judged score is only comparable with scores from the same judge and judge prompts.
            **({"judge prompts": tp.judge_templates} if tp.judge_templates else {}),
            **({"judge": judge.model.model_dump(include={"id", "file_hash", "revision"}),
                "judge decoding": judge.generation.model_dump()} if judged else {}),
        }

    @property
    def unscored(self) -> int:
        return sum(n for status, n in self.result.status_counts.items() if status != "scored")

    @property
    def judge(self) -> str | None:
        """The LLM judge behind the score, if the task is judged."""
        judging = self.result.judging
        return judging.judge if judging is not None else None


@dataclass
class ModelRow:
    key: str  # unique: id, plus @revision when the id does not carry one
    info: ModelInfo
    slug: str
    series: str  # checkpoints of one series share this
    checkpoint: str | None
    cells: dict[str, Cell] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    @property
    def step(self) -> float | None:
        """Training step from names like step-1000, ckpt_500, iter3000 or 1000.

        Only explicit step names count: a git sha such as 0a1b2c also contains
        digits, and ordering by them would be nonsense.
        """
        name = (self.checkpoint or "").strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", name):
            return float(name)
        match = re.search(r"(?:step|ckpt|checkpoint|iter|iteration|epoch)[-_]?(\d+(?:\.\d+)?)", name, re.IGNORECASE)
        return float(match.group(1)) if match else None

    @property
    def started_at(self) -> str:
        return max(r.provenance.started_at for r in self.runs)


@dataclass
class Board:
    rows: list[ModelRow]
    tasks: list[str]  # display order
    runs: list[Run]
    # (model key, task) -> what differs from the task's most common setup.
    deviations: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # task -> pairwise results between models (judged pairwise grading vs baselines)
    matchups: dict[str, list[Matchup]] = field(default_factory=dict)


def _model_key(info: ModelInfo) -> tuple[str, str, str | None]:
    """(row key, series, checkpoint) from ``org/model@step-1000`` or a revision."""
    if "@" in info.id:
        series, _, checkpoint = info.id.rpartition("@")
        return info.id, series, checkpoint
    if info.revision:
        return f"{info.id}@{info.revision}", info.id, info.revision
    return info.id, info.id, None


def _score(metrics: dict, metric: str, scale: float) -> Score | None:
    value = metrics.get(metric)
    if value is None or not math.isfinite(value.value):
        return None
    stderr = value.stderr if value.stderr is not None and math.isfinite(value.stderr) else None
    if value.ci is None:
        return Score.normal(value.value * scale, None if stderr is None else stderr * scale, scale)
    return Score(value.value * scale, None if stderr is None else stderr * scale, value.ci[0] * scale,
                 value.ci[1] * scale, value.n if value.ci_method == "wilson" else None, scale)


def load_runs(paths: list[Path]) -> list[Run]:
    runs: list[Run] = []
    seen: set[str] = set()
    for path in paths:
        rundir = RunDir.existing(path)
        provenance = rundir.provenance()
        results = rundir.results()
        slug = slugify(provenance.run_id)
        while slug in seen:  # the same run id copied into two directories
            slug += "-2"
        seen.add(slug)
        runs.append(Run(rundir, provenance, results, slug))
    return runs


def collect(paths: list[Path], config: SiteConfig) -> Board:
    if not paths:
        raise UserError("no run directories given")
    runs = sorted(load_runs(paths), key=lambda r: r.provenance.started_at)
    rows: dict[str, ModelRow] = {}
    for run in runs:
        key, series, checkpoint = _model_key(run.provenance.model)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ModelRow(key, run.provenance.model, slugify(key), series, checkpoint)
        row.info = run.provenance.model  # the newest run describes the model
        row.runs.append(run)
        for task, result in run.results.tasks.items():
            display = config.task(task)
            metric = display.headline or result.headline
            row.cells[task] = Cell(  # later runs overwrite earlier ones
                task=task,
                run=run,
                result=result,
                metric=metric,
                score=_score(result.metrics, metric, display.scale),
                subtasks={name: _score(sub.metrics, metric, display.scale) for name, sub in result.subtasks.items()},
            )
    # A run whose every task was superseded by a later run is not shown.
    for row in rows.values():
        used = {id(c.run) for c in row.cells.values()}
        row.runs = [r for r in row.runs if id(r) in used]
    tasks = config.task_order({t for row in rows.values() for t in row.cells})
    return Board(list(rows.values()), tasks, runs, _deviations(list(rows.values()), tasks), _matchups(runs))


def _matchups(runs: list[Run]) -> dict[str, list[Matchup]]:
    """Pairwise outcomes per task, the latest run per (model, opponent)."""
    latest: dict[tuple[str, str, str], Matchup] = {}
    for run in runs:  # oldest first: later runs overwrite
        key = _model_key(run.provenance.model)[0]
        for task, result in run.results.tasks.items():
            outcome = result.judging.outcome if result.judging else None
            if outcome is not None and outcome.opponent != key:
                latest[(task, key, outcome.opponent)] = Matchup(key, outcome.opponent, outcome.wins, outcome.losses,
                                                                outcome.ties)
    out: dict[str, list[Matchup]] = {}
    for (task, _, _), matchup in sorted(latest.items()):
        out.setdefault(task, []).append(matchup)
    return out


def _describe(value: object) -> str:
    if isinstance(value, list) and len(value) > 3:
        return f"{len(value)} items"
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _deviations(rows: list[ModelRow], tasks: list[str]) -> dict[tuple[str, str], list[str]]:
    """Flag scores obtained with a different task setup than most of their column
    (another prompt variant, shot count, subtask subset, template or dataset):
    a leaderboard column is only meaningful when its numbers measure one thing."""
    out: dict[tuple[str, str], list[str]] = {}
    for task in tasks:
        cells = [(row.key, row.cells[task]) for row in rows if task in row.cells]
        setups = [json.dumps(c.setup, sort_keys=True, default=str) for _, c in cells]
        reference_key = Counter(setups).most_common(1)[0][0]
        reference = json.loads(reference_key)
        for (key, cell), setup in zip(cells, setups):
            if setup == reference_key:
                continue
            mine = json.loads(setup)
            diffs = sorted(k for k in set(mine) | set(reference) if mine.get(k) != reference.get(k))
            out[(key, task)] = [f"{k}: {_describe(mine.get(k))} (most: {_describe(reference.get(k))})" for k in diffs]
    return out
