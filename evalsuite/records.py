"""Typed records: the single source of every file evalsuite writes or reads.

``run.json`` holds a :class:`RunProvenance`, ``samples.jsonl`` one
:class:`SampleResult` per line and ``results.json`` a :class:`ResultsSummary`.
Readers (scoring, the gate, the leaderboard) go through these models only, so
a schema change is made in exactly one place and announced by
``SCHEMA_VERSION``.
"""

from __future__ import annotations

import enum
import math
from statistics import NormalDist
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(Record):
    role: Literal["system", "user", "assistant"]
    content: str


# A prompt is either raw text (completion models, chat template off) or a
# list of chat messages (the backend applies the model's chat template).
Prompt = Union[str, list[Message]]


class GenerationConfig(Record):
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 1.0
    n: int = 1  # completions per prompt
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class Sample(Record):
    """One evaluation item, as a task produced it from its dataset."""

    id: str  # unique within the task; the resume key together with the task name
    subtask: str | None = None
    input: dict[str, Any]  # the raw dataset row (or the fields the task keeps)
    target: Any
    choices: list[str] | None = None  # option texts for multiple-choice items
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelOutput(Record):
    """What a backend returned for one generation request."""

    completions: list[str]  # n texts, already cut at the first stop string
    finish_reasons: list[str] = Field(default_factory=list)  # "stop" | "length" | "eos"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LoglikelihoodResult(Record):
    """Log-probabilities of each continuation given one shared context."""

    logprobs: list[float]
    is_greedy: list[bool]
    token_counts: list[int]


class ScoreStatus(str, enum.Enum):
    SCORED = "scored"
    # Everything below is *not* folded into metrics; counts are reported.
    GENERATED = "generated"  # generation done, scoring deferred (--generate-only)
    GENERATION_ERROR = "generation_error"
    PARSE_ERROR = "parse_error"  # e.g. a judge reply without a grade
    SANDBOX_ERROR = "sandbox_error"
    SCORING_ERROR = "scoring_error"


class Score(Record):
    """The verdict on one sample."""

    status: ScoreStatus = ScoreStatus.SCORED
    metrics: dict[str, float] = Field(default_factory=dict)  # e.g. {"exact_match": 1.0}
    answer: Any = None  # the extracted answer, if any
    detail: str | None = None  # why it was not scored, or per-completion verdicts


class SampleResult(Record):
    """One line of samples.jsonl."""

    schema_version: str = SCHEMA_VERSION
    task: str
    sample_id: str
    subtask: str | None = None
    prompt: Prompt | None = None  # as sent to the model
    prompt_hash: str = ""
    target: Any = None
    output: ModelOutput | None = None
    loglikelihood: LoglikelihoodResult | None = None
    score: Score
    error: str | None = None
    duration_s: float = 0.0


class ModelInfo(Record):
    id: str
    backend: str
    path: str | None = None
    revision: str | None = None
    file_hash: str | None = None
    dtype: str | None = None
    device: str | None = None
    parameters: int | None = None
    chat_template: bool = False
    chat_template_hash: str | None = None


class DatasetInfo(Record):
    source: str  # hub id or local path
    content_hash: str
    n_rows: int


class TaskProvenance(Record):
    name: str
    version: str
    params: dict[str, Any]
    dataset: DatasetInfo
    template_hashes: dict[str, str]
    generation: GenerationConfig | None = None
    system_message: str | None = None


class RunProvenance(Record):
    """run.json: everything needed to reproduce the run."""

    schema_version: str = SCHEMA_VERSION
    run_id: str
    evalsuite_version: str
    git_sha: str | None = None
    command: list[str] = Field(default_factory=list)
    command_config: dict[str, Any] = Field(default_factory=dict)  # what --resume restores
    model: ModelInfo
    tasks: dict[str, TaskProvenance]
    seed: int
    batch_size: int | str
    limit: int | None = None
    started_at: str
    finished_at: str | None = None
    platform: dict[str, str] = Field(default_factory=dict)


CI_LEVEL = 0.95  # the coverage of every interval a MetricValue carries


class MetricValue(Record):
    """A mean over samples with its standard error and a 95 % interval.

    ``ci`` is ``[low, high]``.  ``ci_method`` says how it was made: "wilson"
    for a proportion (every sample scored 0 or 1; honest at 0 % and 100 %,
    where value ± 1.96 stderr collapses to a point), "normal" (value ± z·stderr)
    otherwise.  ``n`` is the sample count behind the interval; for a macro mean
    of proportions it is Kish's effective size (see evalsuite.metrics).
    """

    value: float
    stderr: float | None = None
    ci: tuple[float, float] | None = None
    ci_method: Literal["wilson", "normal"] | None = None
    n: float | None = None


def wilson_interval(p: float, n: float, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed over ``n`` trials.

    Wilson (1927), JASA 22:209; recommended over the Wald interval by Agresti
    & Coull (1998) and Brown, Cai & DasGupta (2001).  ``n`` may be fractional
    (an effective sample size).  0/10 gives [0, 0.2775].  Raises ValueError
    for n <= 0 or p outside [0, 1].
    """
    if n <= 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"wilson_interval needs n > 0 and 0 <= p <= 1, got p={p}, n={n}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    # Exact ends at 0 % and 100 % (no rounding residue such as 1e-17).
    return (0.0 if p == 0.0 else max(0.0, centre - half), 1.0 if p == 1.0 else min(1.0, centre + half))


class SubtaskResult(Record):
    n_samples: int
    metrics: dict[str, MetricValue]
    status_counts: dict[str, int] = Field(default_factory=dict)


class TaskResult(Record):
    n_samples: int
    metrics: dict[str, MetricValue]
    headline: str  # key into ``metrics`` of the headline number
    # With subtasks: whether ``metrics[headline]`` is the macro or micro mean.
    headline_aggregation: Literal["macro", "micro"] | None = None
    subtasks: dict[str, SubtaskResult] = Field(default_factory=dict)
    status_counts: dict[str, int] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(default_factory=dict)  # e.g. counted data quirks


class ResultsSummary(Record):
    """results.json."""

    schema_version: str = SCHEMA_VERSION
    run_id: str
    model: str
    tasks: dict[str, TaskResult]
